"""Settings: defaults, HAMN_* environment, TOML file and their precedence (hamn.config)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hamn.config import Settings, default_data_dir, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No HAMN_* variables from the caller's shell; XDG_DATA_HOME in the test's directory."""
    for key in list(os.environ):
        if key.upper().startswith("HAMN_"):
            monkeypatch.delenv(key)
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    yield xdg


def write_toml(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# -- defaults --------------------------------------------------------------------------------


def test_defaults(clean_env: Path) -> None:
    s = load_settings()
    assert s.host == "127.0.0.1"
    assert s.port == 5000
    assert s.workers == 2
    assert s.data_dir == clean_env / "hamn"
    assert s.domain == "localhost"
    assert s.default_registry == "local"
    assert s.database_url == ""
    assert s.storage_driver == "filesystem"
    assert s.storage_root == ""
    assert s.fsync is True
    assert s.sqlite_synchronous == "NORMAL"
    assert s.log_level == "info"


def test_default_data_dir_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "hamn"


def test_empty_xdg_data_home_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "hamn"


def test_resolved_paths_default_into_the_data_dir(tmp_path: Path) -> None:
    s = load_settings(data_dir=str(tmp_path / "data"))
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'data' / 'metadata.db'}"
    assert s.resolved_storage_root == str(tmp_path / "data" / "storage")


def test_resolved_paths_are_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(data_dir="relative")
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'relative' / 'metadata.db'}"
    assert s.resolved_storage_root == str(tmp_path / "relative" / "storage")


def test_explicit_database_url_and_storage_root_win(tmp_path: Path) -> None:
    s = load_settings(database_url="postgresql+psycopg://db/hamn", storage_root="/srv/blobs")
    assert s.resolved_database_url == "postgresql+psycopg://db/hamn"
    assert s.resolved_storage_root == "/srv/blobs"


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]


# -- the environment -------------------------------------------------------------------------


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HAMN_HOST", "192.0.2.10")
    monkeypatch.setenv("HAMN_PORT", "6000")
    monkeypatch.setenv("HAMN_WORKERS", "4")
    monkeypatch.setenv("HAMN_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("HAMN_DOMAIN", "registry.example")
    monkeypatch.setenv("HAMN_DEFAULT_REGISTRY", "Team42")
    monkeypatch.setenv("HAMN_FSYNC", "false")
    monkeypatch.setenv("HAMN_SQLITE_SYNCHRONOUS", "FULL")
    monkeypatch.setenv("HAMN_LOG_LEVEL", "debug")
    s = load_settings()
    assert (s.host, s.port, s.workers) == ("192.0.2.10", 6000, 4)
    assert s.data_dir == tmp_path / "env-data"
    assert s.domain == "registry.example"
    assert s.default_registry == "Team42"
    assert s.fsync is False
    assert s.sqlite_synchronous == "FULL"
    assert s.log_level == "debug"


def test_empty_default_registry_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMN_DEFAULT_REGISTRY", "")
    assert load_settings().default_registry is None


def test_hamn_config_variable_is_not_an_unknown_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HAMN_CONFIG", write_toml(tmp_path / "c.toml", "port = 5111\n"))
    assert load_settings().port == 5111


# -- the file --------------------------------------------------------------------------------


def test_toml_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "file-data"
    path = write_toml(
        tmp_path / "hamn.toml",
        f"""
host = "192.0.2.10"
port = 8080
data_dir = "{data_dir}"
default_registry = "fromfile"
fsync = false
log_level = "warning"
""",
    )
    s = load_settings(path)
    assert (s.host, s.port) == ("192.0.2.10", 8080)
    assert s.data_dir == data_dir
    assert s.default_registry == "fromfile"
    assert s.fsync is False
    assert s.log_level == "warning"


def test_file_named_by_hamn_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HAMN_CONFIG", write_toml(tmp_path / "c.toml", 'domain = "cfg.example"\n'))
    assert load_settings().domain == "cfg.example"


def test_explicit_file_beats_hamn_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HAMN_CONFIG", write_toml(tmp_path / "env.toml", "port = 1111\n"))
    assert load_settings(write_toml(tmp_path / "arg.toml", "port = 2222\n")).port == 2222


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="prot"):
        load_settings(write_toml(tmp_path / "c.toml", "prot = 5000\n"))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(str(tmp_path / "absent.toml"))


def test_malformed_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(tomllib.TOMLDecodeError):
        load_settings(write_toml(tmp_path / "c.toml", "port = \n"))


# -- precedence: file < environment < explicit -----------------------------------------------


def test_precedence_file_then_env_then_explicit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write_toml(
        tmp_path / "c.toml",
        'host = "file-host"\nport = 1001\nworkers = 3\ndomain = "file.example"\n',
    )
    monkeypatch.setenv("HAMN_PORT", "2002")
    monkeypatch.setenv("HAMN_WORKERS", "5")
    monkeypatch.setenv("HAMN_DOMAIN", "env.example")
    s = load_settings(path, domain="cli.example")
    assert s.host == "file-host"  # only the file says
    assert s.port == 2002  # env beats file
    assert s.workers == 5  # env beats file
    assert s.domain == "cli.example"  # explicit beats env and file


def test_explicit_beats_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", "port = 1001\n")
    assert load_settings(path, port=3003).port == 3003


def test_explicit_none_means_not_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The CLI passes every option; the ones the user left out arrive as None.
    path = write_toml(tmp_path / "c.toml", "port = 1001\n")
    monkeypatch.setenv("HAMN_HOST", "env-host")
    s = load_settings(path, port=None, host=None, workers=None)
    assert (s.port, s.host, s.workers) == (1001, "env-host", 2)


def test_env_false_beats_file_true(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HAMN_FSYNC", "0")
    assert load_settings(write_toml(tmp_path / "c.toml", "fsync = true\n")).fsync is False


def test_unknown_explicit_override_is_an_error() -> None:
    with pytest.raises(ValidationError):
        load_settings(no_such_setting=1)


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["abcd", "a" * 51, "my-registry", "my_reg1", "reg.one", "régistre"]
)
def test_invalid_default_registry_is_rejected_from_every_source(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="registry names"):
        load_settings(default_registry=name)
    path = write_toml(tmp_path / "c.toml", f'default_registry = "{name}"\n')
    with pytest.raises(ValidationError, match="registry names"):
        load_settings(path)
    monkeypatch.setenv("HAMN_DEFAULT_REGISTRY", name)
    with pytest.raises(ValidationError, match="registry names"):
        load_settings()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("port", 0),
        ("port", 65536),
        ("workers", 0),
        ("workers", 65),
        ("storage_driver", "s3"),
        ("storage_driver", "memory"),
        ("sqlite_synchronous", "EXTRA"),
        ("sqlite_synchronous", "normal"),
        ("log_level", "trace"),
        ("fsync", "sometimes"),
    ],
)
def test_out_of_range_values_are_rejected(key: str, value: object) -> None:
    overrides: dict[str, Any] = {key: value}
    with pytest.raises(ValidationError, match=key):
        load_settings(**overrides)


def test_invalid_environment_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMN_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="port"):
        load_settings()


def test_settings_can_be_built_directly() -> None:
    # create_app takes a Settings; tests build their own without load_settings.
    s = Settings(port=5055, default_registry="tests")
    assert (s.port, s.default_registry) == (5055, "tests")


# -- shared deployments: database and object storage (issue 5) ------------------------------


def test_postgresql_and_azure_from_a_file_with_the_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write_toml(
        tmp_path / "hamn.toml",
        """
database_url = "postgresql+psycopg://hamn@db.internal/hamn"
storage_driver = "azure"
azure_container = "registry"
storage_prefix = "prod/"
blob_redirects = true
redirect_ttl = "10m"
""",
    )
    conn = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=core"
    monkeypatch.setenv("HAMN_AZURE_CONNECTION_STRING", conn)
    s = load_settings(path)
    assert s.resolved_database_url == "postgresql+psycopg://hamn@db.internal/hamn"
    assert (s.storage_driver, s.azure_container, s.storage_prefix) == ("azure", "registry", "prod/")
    assert s.azure_connection_string == conn
    assert (s.blob_redirects, s.redirect_ttl) == (True, 600.0)
    # Secrets stay out of the settings' printed form (logs, error messages).
    assert "c2VjcmV0" not in repr(s)


def test_s3_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "HAMN_STORAGE_DRIVER": "s3",
        "HAMN_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
        "HAMN_S3_BUCKET": "hamn",
        "HAMN_S3_ACCESS_KEY_ID": "AKID",
        "HAMN_S3_SECRET_ACCESS_KEY": "very-secret-key",
    }.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    assert (s.storage_driver, s.s3_endpoint_url, s.s3_bucket) == (
        "s3",
        "http://127.0.0.1:8333",
        "hamn",
    )
    assert (s.s3_region, s.s3_access_key_id) == ("us-east-1", "AKID")
    assert "very-secret-key" not in repr(s)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"storage_driver": "azure"}, "azure_connection_string"),
        ({"storage_driver": "s3"}, "s3_bucket"),
        ({"storage_driver": "gcs"}, "storage_driver"),
        ({"redirect_ttl": 0}, "redirect_ttl"),
    ],
)
def test_incomplete_object_storage_settings_are_refused(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)
