"""Settings: an optional TOML file, then ``HAMN_*`` environment variables, then CLI options.

Validated once at start-up; the result is a frozen value handed to
``create_app``. Nothing else in hamn reads the environment.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hamn.oci.names import is_valid_registry_name


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/hamn`` (``~/.local/share/hamn``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "hamn"


_GIB = 1024**3
#: Included storage per SKU (SPEC §2).
DEFAULT_STORAGE_QUOTAS = {"Basic": 10 * _GIB, "Standard": 100 * _GIB, "Premium": 500 * _GIB}


_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number of seconds, or parts such as ``1h``, ``1h30m``, ``7d``."""
    cleaned = text.strip().lower()
    try:
        return float(cleaned)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)([dhms])", cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"{text!r} is not a duration such as 3600, 1h, 90m, 1h30m or 7d")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


class Settings(BaseSettings):
    """Everything ``hamn serve`` needs to know."""

    model_config = SettingsConfigDict(env_prefix="HAMN_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)
    data_dir: Path = Field(default_factory=default_data_dir)
    #: Registries answer at ``<name>.<domain>[:port]`` (SPEC §3.5).
    domain: str = "localhost"
    #: The registry that answers when neither host nor first path segment names one.
    default_registry: str | None = "local"
    #: SQLAlchemy URL; empty means SQLite in the data directory.
    database_url: str = ""
    #: Where blob bytes live: a local directory, Azure Blob Storage or S3-compatible
    #: object storage (SPEC §6.1). Several servers share the object stores.
    storage_driver: Literal["filesystem", "azure", "s3"] = "filesystem"
    #: Root of the filesystem driver; empty means ``<data_dir>/storage``.
    storage_root: str = ""
    #: Object-storage drivers keep every key under this prefix of the container or
    #: bucket (several deployments may share one).
    storage_prefix: str = ""
    #: Azure Blob Storage: a connection string (``DefaultEndpointsProtocol=...;
    #: AccountName=...;AccountKey=...;BlobEndpoint=...``) and the container, made on
    #: first start when missing.
    azure_connection_string: str = Field("", repr=False)
    azure_container: str = "hamn"
    #: S3-compatible storage: the endpoint (empty: AWS), region, bucket (made on first
    #: start when missing) and the access key pair.
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_bucket: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = Field("", repr=False)
    #: Object-storage drivers stage each request's upload bytes in this local
    #: directory before sending them to storage; empty means ``<data_dir>/spool``.
    spool_dir: str = ""
    #: Blob GETs answer ``307`` to a signed, expiring URL of the blob in storage (an
    #: Azure SAS, an S3 presigned URL, or hamn's own signed URL for the filesystem)
    #: instead of sending the bytes themselves (SPEC §3.6).
    blob_redirects: bool = False
    #: How long a redirect's signed URL stays valid.
    redirect_ttl: float = Field(1200.0, gt=0, le=7 * 86400)
    #: Flush blob data and metadata to disk before acknowledging a push.
    fsync: bool = True
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: One JSON line per request; off by default (it costs ~30% of the small-request
    #: rate), always on at debug level.
    access_log: bool = False
    #: TLS: a PEM certificate chain and its PKCS#8 PEM key; both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The oldest TLS version accepted (SPEC §9: "TLS 1.2-only").
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    #: Base64 of 32 bytes that seal secrets at rest; empty: ``<data_dir>/server.key``
    #: (made on first start, mode 0600). Set it when several servers share a database.
    secret_key: str = Field("", repr=False)
    #: The first owner, made on first start (Owner at ``/``). Without a password one
    #: is generated and shown once in the start-up banner (never logged).
    bootstrap_username: str = Field("hamn-admin", min_length=1, max_length=255)
    bootstrap_password: str = Field("", repr=False)
    #: How long refresh tokens (``hamn login``, ``hamn auth login``) stay valid.
    refresh_token_hours: int = Field(24, ge=1, le=24 * 90)
    #: Each SKU's storage quota in bytes (SPEC §2: 10, 100 and 500 GiB), the limit of
    #: show-usage's Size and of pushes. ``HAMN_STORAGE_QUOTAS='{"Basic": 1073741824}'``
    #: changes some and keeps the others.
    storage_quotas: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_STORAGE_QUOTAS))
    #: Failed sign-ins allowed per minute per (client address, username), and per address.
    auth_failures_per_user: int = Field(10, ge=1)
    auth_failures_per_address: int = Field(100, ge=1)
    #: Garbage collection (seconds, or durations such as ``1h``, ``90m``, ``7d``): a blob
    #: link no manifest of its repository references is removed once older than
    #: ``gc_grace`` (clients upload layers before the manifest that names them), and
    #: blobs nothing links or references go with it.
    gc_grace: float = Field(3600.0, ge=0)
    #: Collections also delete untagged manifests nothing needs, once untagged for
    #: ``gc_grace`` (Distribution's ``--delete-untagged``). Off: ACR keeps them; a
    #: registry's retention policy deletes them per registry.
    gc_delete_untagged: bool = False
    #: How often the deployment collects garbage (a ``gc`` job, run by one worker
    #: process at a time); 0: never.
    gc_interval: float = Field(3600.0, ge=0)
    #: Job worker processes ``hamn serve`` starts beside its HTTP workers (garbage
    #: collection and other background work); 0 when dedicated ``hamn worker``
    #: processes run elsewhere.
    job_workers: int = Field(1, ge=0, le=64)
    #: How long a worker's claim on a job (and the collector's lease) lasts unless
    #: renewed: a dead worker's job is taken over after it.
    job_lease: float = Field(30.0, gt=0, le=3600)
    #: Upload sessions not written to for this long are abandoned and removed.
    upload_timeout: float = Field(24 * 3600.0, gt=0)

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both tls_cert and tls_key")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    @model_validator(mode="after")
    def _object_storage(self) -> Settings:
        if self.storage_driver == "azure" and not self.azure_connection_string:
            raise ValueError("the azure storage driver needs azure_connection_string")
        if self.storage_driver == "s3" and not self.s3_bucket:
            raise ValueError("the s3 storage driver needs s3_bucket")
        return self

    @property
    def scheme(self) -> str:
        """``https`` when TLS is configured, else ``http``."""
        return "https" if self.tls_cert else "http"

    @field_validator("storage_quotas")
    @classmethod
    def _quotas(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - set(DEFAULT_STORAGE_QUOTAS)
        if unknown:
            raise ValueError(
                f"storage_quotas: unknown SKU {sorted(unknown)}; SKUs are Basic, Standard, Premium"
            )
        if any(v <= 0 for v in value.values()):
            raise ValueError("storage_quotas: a quota is a positive number of bytes")
        return {**DEFAULT_STORAGE_QUOTAS, **value}

    @field_validator(
        "gc_grace", "gc_interval", "upload_timeout", "redirect_ttl", "job_lease", mode="before"
    )
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("default_registry")
    @classmethod
    def _registry_name(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not is_valid_registry_name(value):
            raise ValueError("registry names are 5-50 ASCII letters and digits")
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL to connect to."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.absolute() / 'metadata.db'}"

    @property
    def resolved_storage_root(self) -> str:
        """The filesystem driver's root directory."""
        return self.storage_root or str(self.data_dir.absolute() / "storage")

    @property
    def resolved_spool_dir(self) -> str:
        """Where object-storage drivers stage upload bytes."""
        return self.spool_dir or str(self.data_dir.absolute() / "spool")


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Settings from a TOML file (optional), the environment and explicit overrides."""
    file_values: dict[str, Any] = {}
    path = config_file or os.environ.get("HAMN_CONFIG")
    if path:
        with open(path, "rb") as fh:
            file_values = tomllib.load(fh)
    # Keyword arguments beat the environment in pydantic-settings, so the file's
    # values are passed only where the environment says nothing.
    env_keys = Settings().model_fields_set
    from_file = {k: v for k, v in file_values.items() if k not in env_keys}
    explicit = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**{**from_file, **explicit})
