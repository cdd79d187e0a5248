"""The Docker token scope grammar: ``type[(class)]:name:action[,action...]``.

A scope names a resource and the actions asked for or granted on it. Clients
send them as ``scope=`` parameters to the token endpoint (the parameter may be
repeated; the OAuth2 form puts several in one value separated by spaces), the
registry names them in ``WWW-Authenticate`` challenges, and issued tokens carry
them in their ``access`` claim.

Parsing follows CNCF Distribution: the resource type runs to the first ``:``,
the actions follow the last ``:``, and the name is everything in between, so a
name may itself contain ``:`` (a ``host:port/`` prefix). A type may carry a
resource class in parentheses, as in ``repository(plugin):name:pull``.

The vocabulary hamn understands (anything else parses, but the policy grants
nothing for it):

- ``repository:<repo>:`` ``pull``, ``push``, ``delete``, ``metadata_read``,
  ``metadata_write``, ``deleted_read``, ``deleted_restore``, ``*`` (ACR), and
  hamn's ``sign``, ``quarantine_read``, ``quarantine_write``;
- ``registry:catalog:*`` (the catalog is only ever asked for with ``*``);
- ``artifact-repository:<repo>:pull|push|delete`` (ACR's legacy Helm type).

A scope that does not follow the grammar is refused with :class:`ScopeError`,
a ``DENIED`` error naming the offending text: nothing is granted for a request
the server cannot read, and the client learns exactly which scope was wrong.
A well-formed scope asking for actions the caller does not hold is *not* an
error; the token server grants the intersection (see :mod:`hamn.auth.policy`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hamn.errors import DENIED, HamnError

REPOSITORY = "repository"
REGISTRY = "registry"
ARTIFACT_REPOSITORY = "artifact-repository"
CATALOG = "catalog"
WILDCARD = "*"

#: Repository actions ACR defines, in ACR's order.
ACR_REPOSITORY_ACTIONS: tuple[str, ...] = (
    "pull",
    "push",
    "delete",
    "metadata_read",
    "metadata_write",
    "deleted_read",
    "deleted_restore",
    WILDCARD,
)
#: Repository actions hamn adds for its roles (signatures and quarantine).
HAMN_REPOSITORY_ACTIONS: tuple[str, ...] = ("sign", "quarantine_read", "quarantine_write")

#: Longest scope text accepted, and most scopes in one request.
MAX_SCOPE_LENGTH = 1024
MAX_SCOPES = 100

_TYPE = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_TYPE_RE = re.compile(rf"^(?P<type>{_TYPE})(?:\((?P<cls>{_TYPE})\))?\Z")
# Repository paths, optionally behind a host[:port]/ prefix; registry names in
# the path keep their capitals, so upper case is allowed here.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*\Z")
_ACTION_RE = re.compile(r"^(?:\*|[a-z][a-z0-9_-]*)\Z")


class ScopeError(HamnError):
    """A scope that does not follow the grammar (code ``DENIED``)."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(
            DENIED,
            f"malformed scope {text[:200]!r}: {reason}",
            detail={"scope": text[:MAX_SCOPE_LENGTH]},
        )
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource and the actions on it, e.g. ``repository:samples/hello:pull,push``."""

    type: str
    name: str
    actions: tuple[str, ...]
    resource_class: str | None = None

    def __str__(self) -> str:
        return format_scope(self)

    @property
    def resource(self) -> tuple[str, str | None, str]:
        """``(type, class, name)``: what two scopes on the same resource share."""
        return (self.type, self.resource_class, self.name)

    def to_claim(self) -> dict[str, object]:
        """The token ``access`` entry: ``{"type", "name", "actions"}`` (+ ``"class"``)."""
        claim: dict[str, object] = {"type": self.type, "name": self.name}
        if self.resource_class is not None:
            claim["class"] = self.resource_class
        claim["actions"] = list(self.actions)
        return claim

    @classmethod
    def from_claim(cls, claim: object) -> Scope:
        """Read one ``access`` entry of a token; raises :class:`ScopeError` if malformed."""
        if not isinstance(claim, Mapping):
            raise ScopeError(repr(claim), "an access entry is an object")
        typ, name, actions = claim.get("type"), claim.get("name"), claim.get("actions")
        resource_class = claim.get("class")
        if not isinstance(typ, str) or not isinstance(name, str):
            raise ScopeError(repr(claim), "type and name are strings")
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise ScopeError(repr(claim), "actions is a list of strings")
        if resource_class is not None and not isinstance(resource_class, str):
            raise ScopeError(repr(claim), "class is a string")
        type_text = typ if resource_class is None else f"{typ}({resource_class})"
        text = f"{type_text}:{name}:{','.join(actions)}"
        if not actions:
            # A granted resource with no actions is legal in a token (nothing granted).
            _check_resource(text, type_text, name)
            return cls(typ, name, (), resource_class)
        return parse_scope(text)


#: The scope that lists the catalog.
CATALOG_SCOPE = Scope(REGISTRY, CATALOG, (WILDCARD,))


def _check_resource(text: str, type_text: str, name: str) -> tuple[str, str | None]:
    m = _TYPE_RE.match(type_text)
    if m is None:
        raise ScopeError(text, f"resource type {type_text[:100]!r} is not a valid type")
    if not name:
        raise ScopeError(text, "the resource name is empty")
    if len(name) > MAX_SCOPE_LENGTH or not _NAME_RE.match(name):
        raise ScopeError(text, f"resource name {name[:100]!r} is not valid")
    return m["type"], m["cls"]


def parse_scope(text: str) -> Scope:
    """Parse one scope; raises :class:`ScopeError` if it breaks the grammar.

    Repeated actions are kept once, in the order first given.
    """
    if len(text) > MAX_SCOPE_LENGTH:
        raise ScopeError(text, f"longer than {MAX_SCOPE_LENGTH} characters")
    first, last = text.find(":"), text.rfind(":")
    if first < 0 or first == last:
        raise ScopeError(text, "expected type:name:actions")
    type_text, name, action_text = text[:first], text[first + 1 : last], text[last + 1 :]
    typ, resource_class = _check_resource(text, type_text, name)
    actions: list[str] = []
    for action in action_text.split(","):
        if not _ACTION_RE.match(action):
            raise ScopeError(text, f"action {action[:100]!r} is not valid")
        if action not in actions:
            actions.append(action)
    return Scope(typ, name, tuple(actions), resource_class)


def parse_scopes(values: Iterable[str]) -> tuple[Scope, ...]:
    """Parse every scope in ``values`` (each may hold several, separated by spaces).

    Scopes on the same resource are merged (see :func:`merge_scopes`). Raises
    :class:`ScopeError` for a malformed scope or more than :data:`MAX_SCOPES`.
    """
    parsed: list[Scope] = []
    for value in values:
        for text in value.split():
            if len(parsed) >= MAX_SCOPES:
                raise ScopeError(text, f"more than {MAX_SCOPES} scopes in one request")
            parsed.append(parse_scope(text))
    return merge_scopes(parsed)


def merge_scopes(scopes: Iterable[Scope]) -> tuple[Scope, ...]:
    """Join scopes on the same resource into one, actions in first-seen order.

    Resources keep the order in which they first appear.
    """
    merged: dict[tuple[str, str | None, str], list[str]] = {}
    for scope in scopes:
        actions = merged.setdefault(scope.resource, [])
        actions.extend(a for a in scope.actions if a not in actions)
    return tuple(
        Scope(typ, name, tuple(actions), cls) for (typ, cls, name), actions in merged.items()
    )


def format_scope(scope: Scope) -> str:
    """The text form, ``type[(class)]:name:a,b``."""
    typ = scope.type if scope.resource_class is None else f"{scope.type}({scope.resource_class})"
    return f"{typ}:{scope.name}:{','.join(scope.actions)}"


def format_scopes(scopes: Iterable[Scope]) -> str:
    """Several scopes as one space-separated value (a challenge's ``scope="..."``)."""
    return " ".join(format_scope(s) for s in scopes)
