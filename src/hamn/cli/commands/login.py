"""``hamn login`` and ``hamn kube-secret``: credentials for docker, podman and Kubernetes.

``hamn login -n R`` does what ``az acr login`` does: it trades the command's
credentials for a refresh token at ``/oauth2/exchange`` and hands it to the
container tools as the password of the null GUID user (the tools then run the
token flow with it). It is written, merged into what is there and atomically
with mode 0600, to

* docker's ``config.json`` (``$DOCKER_CONFIG``, else ``~/.docker``), and
* the containers tools' auth file (podman, buildah, skopeo;
  containers-auth.json(5)): ``$REGISTRY_AUTH_FILE``, else the primary file
  ``$XDG_RUNTIME_DIR/containers/auth.json``. Without ``XDG_RUNTIME_DIR`` the
  tools' own fallback is under ``/run``, which a user may not be able to
  create; ``$XDG_CONFIG_HOME/containers/auth.json`` is the file the man page
  names next in the search order, so it is written instead.

The entry's key is the login server. When ``--server`` is the registry's own
login server (``R.<domain>[:port]``) that is its host; otherwise it is the
server's ``host:port`` and images are addressed ``host:port/R/<repo>``.

``--expose-token`` writes nothing and prints ACR's ``{loginServer, username,
accessToken, refreshToken}`` instead, for ``docker login --password-stdin``.

``hamn kube-secret -n R`` prints a ``kubernetes.io/dockerconfigjson`` Secret for
the same login server: with ``-u/-p`` (a repository token or a service
principal, which do not expire) those go in it; with the session, a refresh
token that expires in a day does, and a warning says so.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Any

import click

from hamn.cli.client import Credentials, RegistryClient
from hamn.cli.context import HamnGroup, Invocation, command, registry_option, server_errors
from hamn.cli.errors import CLIError
from hamn.cli.session import (
    NULL_GUID,
    config_home,
    read_json_file,
    service_of,
    token_expiry,
    write_private_file,
)

log = logging.getLogger("hamn.cli")


@click.group("login", cls=HamnGroup)
def login_commands() -> None:
    """Registry sign-in for other tools (its commands are added to ``hamn`` itself)."""


# ------------------------------------------------------------------ files


def docker_config_path() -> Path:
    """docker's ``config.json``: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker/config.json"


def containers_auth_path() -> Path:
    """The auth file podman, buildah and skopeo read first (see the module docstring)."""
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        if not Path(runtime).is_dir():
            # The tools refuse this too; creating it would hide the user's mistake.
            raise CLIError(
                f"XDG_RUNTIME_DIR is {runtime}, which does not exist. Create it or unset it."
            )
        return Path(runtime) / "containers" / "auth.json"
    return config_home() / "containers" / "auth.json"


def basic_auth(credentials: Credentials) -> str:
    """The ``auth`` value of an auth file entry: base64 of ``username:password``."""
    return base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def merge_auth(path: Path, login_server: str, credentials: Credentials) -> dict[str, Any]:
    """Put ``login_server``'s entry into the auth file at ``path``, keeping every other entry.

    The entry is replaced whole: a stale ``identitytoken`` left in it would be
    preferred by docker over the new ``auth``. Returns the file's new content.
    """
    data = read_json_file(path)
    auths = data.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise CLIError(f"{path}: 'auths' is not a JSON object; fix or remove it.")
    auths[login_server] = {"auth": basic_auth(credentials)}
    write_private_file(path, (json.dumps(data, indent="\t") + "\n").encode())
    return data


def _docker_helper_warning(data: dict[str, Any], login_server: str, path: Path) -> str | None:
    helpers = data.get("credHelpers")
    helper = helpers.get(login_server) if isinstance(helpers, dict) else None
    helper = helper or data.get("credsStore")
    if not helper or helper == "hamn":
        return None
    return (
        f"{path} names the credential helper 'docker-credential-{helper}' for "
        f"{login_server}, so docker asks it instead of the entry written there. Use "
        f"'hamn login -n NAME --expose-token' with 'docker login --password-stdin', or "
        f'set credHelpers["{login_server}"] to "hamn".'
    )


# ------------------------------------------------------------------ commands


def _need_credentials(inv: Invocation) -> Credentials:
    if inv.credentials is None:
        raise CLIError(
            f"No credentials for {inv.server}. Run 'hamn auth login --server {inv.server}', "
            "or pass -u/--username and -p/--password."
        )
    return inv.credentials


def _refresh_token(client: RegistryClient, credentials: Credentials) -> Credentials:
    with server_errors():
        token = client.exchange(credentials)
    return Credentials(NULL_GUID, token)


def _address_hint(inv: Invocation, client: RegistryClient, login_server: str) -> None:
    if not client.host_routed:
        inv.warn(
            f"Images of registry '{client.registry}' are addressed "
            f"{login_server}/{client.registry}/<repository>[:tag]."
        )


@command(login_commands, "login")
@registry_option("-n", "--name")
@click.option(
    "-t",
    "--expose-token",
    is_flag=True,
    help="Print an access token instead of writing it for docker and podman.",
)
def login(inv: Invocation, registry: str, expose_token: bool) -> Any:
    """Log in to a registry: docker, podman, buildah and skopeo can then push and pull."""
    client = inv.client(registry)
    token = _refresh_token(client, _need_credentials(inv))
    login_server = service_of(client.server)
    if expose_token:
        inv.warn(
            "You can log in with the token below, for example: "
            f"'hamn login -n {registry} --expose-token --query accessToken -o tsv | "
            f"docker login {login_server} -u {NULL_GUID} --password-stdin'"
        )
        return {
            "loginServer": login_server,
            "username": NULL_GUID,
            "accessToken": token.password,
            "refreshToken": token.password,
        }
    # Find both places before writing either, so a bad setting writes nothing.
    targets = [docker_config_path(), containers_auth_path()]
    for path in targets:
        data = merge_auth(path, login_server, token)
        log.info("Credentials for %s written to %s", login_server, path)
        if path == targets[0]:
            warning = _docker_helper_warning(data, login_server, path)
            if warning:
                inv.warn(warning)
    _address_hint(inv, client, login_server)
    click.echo("Login Succeeded")
    return None


@command(login_commands, "kube-secret", default_output="yaml")
@registry_option("-n", "--name")
@click.option(
    "--secret-name",
    metavar="NAME",
    help="The Secret's name (default: <registry>-pull, in lower case).",
)
@click.option("--namespace", metavar="NAMESPACE", help="The Secret's namespace.")
def kube_secret(
    inv: Invocation, registry: str, secret_name: str | None, namespace: str | None
) -> dict[str, Any]:
    """Print an imagePullSecret (kubernetes.io/dockerconfigjson) for a registry."""
    client = inv.client(registry)
    credentials = _need_credentials(inv)
    login_server = service_of(client.server)
    if credentials.username == NULL_GUID:
        # A session's token may be nearly spent; a fresh one lives its full lifetime.
        credentials = _refresh_token(client, credentials)
        expiry = token_expiry(credentials.password)
        until = f"at {expiry:%Y-%m-%dT%H:%M:%SZ}" if expiry else "within a day"
        inv.warn(
            f"The Secret holds a refresh token that expires {until}; pulls fail after that. "
            "For a credential that lasts, pass -u/-p of a repository token "
            "('hamn token create') or a service principal."
        )
    _address_hint(inv, client, login_server)
    config = {
        "auths": {
            login_server: {
                "username": credentials.username,
                "password": credentials.password,
                "auth": basic_auth(credentials),
            }
        }
    }
    metadata = {"name": secret_name or f"{registry.lower()}-pull"}
    if namespace:
        metadata["namespace"] = namespace
    encoded = base64.b64encode(json.dumps(config, separators=(",", ":")).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": encoded},
    }
