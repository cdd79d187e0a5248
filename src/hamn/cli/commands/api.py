"""What the management command groups share: the ``/api`` paths, JSON calls, az's
``true|false`` arguments, ``--repository REPO ACTION...`` and the words for a 404.

The management API (docs/design/control-plane.md, "Management REST API") answers
JSON with camelCase keys and ACR's shapes; lists come as ``{"value": [...]}``,
which ``az`` prints as a plain array.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import click

from hamn.cli.client import RegistryClient, RegistryError
from hamn.cli.context import HamnGroup, Invocation, describe, server_errors, usage_error
from hamn.cli.errors import CLIError

#: The repository actions a scope map may grant (SPEC §2), as ``az acr scope-map`` spells them.
REPOSITORY_ACTIONS = (
    "content/delete",
    "content/read",
    "content/write",
    "metadata/read",
    "metadata/write",
)
#: What ``click.option(...)`` gives: a decorator of a command function.
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
#: Separates the values of one multi-value option occurrence after regrouping (never typed).
_JOIN = "\x1f"


def api_path(*segments: str) -> str:
    """``/api/<segment>/...`` with every segment quoted (names never split a path)."""
    return "/api/" + "/".join(quote(segment, safe="") for segment in segments)


def registry_path(registry: str, *segments: str) -> str:
    """``/api/registries/<registry>/...``."""
    return api_path("registries", registry, *segments)


def call(client: RegistryClient, method: str, path: str, body: Any = None) -> Any:
    """Send one management request; its JSON answer, or None when it has no body."""
    response = client.request(method, path, json_body=body)
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:
        raise RegistryError(
            response.status_code,
            method,
            str(response.request.url),
            message="the server's answer is not JSON; is --server a hamn server?",
        ) from None


def values(body: Any) -> list[Any]:
    """The entries of a ``{"value": [...]}`` list answer."""
    entries = body.get("value") if isinstance(body, dict) else None
    return entries if isinstance(entries, list) else []


def list_in_registry(inv: Invocation, registry: str, collection: str) -> list[Any]:
    """The entries of ``/api/registries/<registry>/<collection>`` (tokens, scope maps)."""
    with server_errors(not_found=registry_not_found(registry)):
        return values(inv.client(registry).get_json(registry_path(registry, collection)))


def registry_not_found(registry: str) -> str:
    """What to say when a registry is not there, or is there but hidden from the caller."""
    return (
        f"Registry '{registry}' was not found, or you cannot see it. 'hamn list' shows the "
        "registries you can see; to see this one, ask an Owner for Reader or better: "
        f"hamn role assignment create --role Reader --assignee <you> --scope /registries/{registry}"
    )


# ------------------------------------------------------------------ true | false


class Boolean(click.ParamType[bool]):
    """az's three-state flags: ``true`` or ``false`` (any case), nothing else."""

    name = "true|false"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bool:
        """``true``/``false`` as a bool; anything else is a usage error."""
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        self.fail(f"'{value}' is not one of 'true', 'false'.", param, ctx)


BOOLEAN = Boolean()


def choice(*values: str) -> click.Choice[str]:
    """A case-insensitive choice (az accepts ``--sku basic``)."""
    return click.Choice(values, case_sensitive=False)


def canonical(value: str | None, *values: str) -> str | None:
    """``value`` spelled as in ``values`` (``basic`` -> ``Basic``)."""
    if value is None:
        return None
    return next((v for v in values if v.lower() == value.lower()), value)


# ------------------------------------------------------------------ --repository REPO ACTION...


class MultiValueGroup(HamnGroup):
    """A group whose commands take az's ``--repository REPO ACTION [ACTION ...]`` options.

    click gives an option a fixed number of values; az's take every word up to
    the next option. Before a subcommand parses its arguments, the words after
    each such flag are joined into one value, which :func:`repository_actions`
    splits again.
    """

    #: The flags whose values run up to the next option.
    multi_value_flags: frozenset[str] = frozenset(
        {"--repository", "--add-repository", "--remove-repository", "--remove-repo"}
    )

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Find the subcommand, then regroup the multi-value options of its arguments."""
        name, cmd, rest = super().resolve_command(ctx, args)
        return name, cmd, self._regroup(rest)

    def _regroup(self, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            flag, eq, first = arg.partition("=")
            if flag not in self.multi_value_flags:
                out.append(arg)
                if arg == "--":
                    out.extend(args[i:])
                    break
                continue
            words = [first] if eq else []
            while i < len(args) and not args[i].startswith("-"):
                words.append(args[i])
                i += 1
            out.append(flag)
            if words:
                out.append(_JOIN.join(words))
        return out


def split_values(occurrences: tuple[str, ...]) -> list[str]:
    """Every word given to a multi-value option, over all its occurrences."""
    return [word for occurrence in occurrences for word in occurrence.split(_JOIN) if word]


def multi_value_group(*flags: str) -> type[MultiValueGroup]:
    """A :class:`MultiValueGroup` class whose multi-value flags are ``flags``."""
    return type("MultiValueGroup", (MultiValueGroup,), {"multi_value_flags": frozenset(flags)})


def repository_actions(occurrences: tuple[str, ...], flag: str = "--repository") -> list[str]:
    """``repositories/<repo>/<action>`` for every ``FLAG REPO ACTION...`` given.

    A repository may be a wildcard (``samples/*``); names are lowercased, as
    repository names are.
    """
    actions: list[str] = []
    for occurrence in occurrences:
        repo, *wanted = occurrence.split(_JOIN)
        repo = repo.strip().lower()
        if not repo or not wanted:
            raise usage_error(
                f"{flag} takes a repository and at least one action, e.g. "
                f"'{flag} hello-world content/read metadata/read'."
            )
        for action in wanted:
            action = action.strip().lower()
            if action not in REPOSITORY_ACTIONS:
                raise usage_error(
                    f"'{action}' is not a repository action; use one of "
                    + ", ".join(REPOSITORY_ACTIONS)
                    + "."
                )
            entry = f"repositories/{repo}/{action}"
            if entry not in actions:
                actions.append(entry)
    return actions


def repository_option(*decls: str, help_text: str) -> Decorator:
    """A ``FLAG REPO ACTION...`` option (repeatable); see :class:`MultiValueGroup`."""
    return click.option(
        *decls,
        multiple=True,
        metavar="REPO ACTION...",
        help=help_text + " Actions: " + ", ".join(REPOSITORY_ACTIONS) + ". Repeatable.",
    )


# ------------------------------------------------------------------ refusals


@contextmanager
def refusals(*, not_found: str | None = None, conflict: str | None = None) -> Iterator[None]:
    """Like ``server_errors``, and ``conflict`` words a 409 (the server's words follow)."""
    try:
        yield
    except RegistryError as exc:
        if exc.status == 409 and conflict:
            raise CLIError(f"{conflict} ({exc.describe()})") from None
        raise CLIError(describe(exc, not_found)) from None
