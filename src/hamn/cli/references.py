"""Names on the command line: repositories, ``repo:tag`` / ``repo@digest`` images, and
fully qualified ``<registry>.<domain>/<repository>`` forms. Pure; raise ValueError.

Repository names are lowercased: OCI names are lowercase, so an uppercase name
can never exist, and ``--repository myRepository`` (as in ACR's documentation)
means ``myrepository``. Tags keep their case.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hamn.errors import HamnError
from hamn.oci.digest import parse_digest
from hamn.oci.names import is_valid_registry_name, validate_repository_name, validate_tag


@dataclass(frozen=True, slots=True)
class Image:
    """A repository and one of a tag or a digest."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


def repository_name(value: str) -> str:
    """A valid (lowercased) repository name, or ValueError saying what is wrong."""
    name = value.strip().lower()
    try:
        return validate_repository_name(name)
    except HamnError as exc:
        raise ValueError(f"'{value}' is not a repository name: {exc.message}.") from None


def parse_image(image: str, *, allow_digest: bool = True) -> Image:
    """``repo:tag``, ``repo@digest`` (when allowed) or ``repo`` (meaning ``repo:latest``)."""
    forms = "'name:tag' or 'name@digest'" if allow_digest else "'name:tag'"
    if "@" in image:
        if not allow_digest:
            raise ValueError(f"'{image}' names a digest; give a tag, as {forms}.")
        name, _, digest = image.partition("@")
        if "@" in digest or not name:
            raise ValueError(f"'{image}' is not an image; give it as {forms}.")
        try:
            parsed = parse_digest(digest)
        except HamnError as exc:
            raise ValueError(f"'{digest}' is not a digest: {exc.message}.") from None
        return Image(repository_name(name), digest=str(parsed))
    if ":" in image:
        name, _, tag = image.partition(":")
        if ":" in tag or not name:
            raise ValueError(f"'{image}' is not an image; give it as {forms}.")
        try:
            validate_tag(tag)
        except HamnError as exc:
            raise ValueError(f"'{tag}' is not a tag: {exc.message}.") from None
        return Image(repository_name(name), tag=tag)
    return Image(repository_name(image), tag="latest")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def parse_repository_id(value: str) -> tuple[str, str]:
    """``(registry, repository)`` from a fully qualified repository.

    ``myregistry.<domain>[:port]/hello-world`` names registry ``myregistry`` by
    its login server (as ``myregistry.azurecr.io/hello-world`` does for az).
    ``<host>:<port>/<registry>/<repository>`` on a plain host (``localhost``, an
    IP address) names it by the first path segment (SPEC §3.5).
    """
    text = value.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    host, sep, path = text.partition("/")
    example = (
        "give a repository such as 'myregistry.localhost/hello-world' or use "
        "'-r myregistry -n hello-world'"
    )
    if not sep or not path or not host:
        raise ValueError(f"'{value}' is not a fully qualified repository; {example}.")
    if "@" in path or ":" in path:
        raise ValueError(f"'{value}' names a tag or digest; give the repository alone.")
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if "." in hostname and not _is_ip(hostname):
        registry, repository = hostname.split(".", 1)[0], path
    else:
        registry, _, repository = path.partition("/")
        if not repository:
            raise ValueError(f"'{value}' names no repository; {example}.")
    if not is_valid_registry_name(registry):
        raise ValueError(f"'{registry}' in '{value}' is not a registry name; {example}.")
    return registry, repository_name(repository)
