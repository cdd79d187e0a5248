"""What ``hamn purge`` deletes, decided without I/O: ``--ago``, ``--filter`` and the plans.

The rules are acr-cli's (``acr purge``, github.com/Azure/acr-cli ``cmd/acr/purge.go``
and ``cmd/repository/image_functions.go``), with its plain defects fixed:

* ``--ago``: ``[<days>d][<Go duration>]``, e.g. ``2d3h6m``, ``90m``, ``1.5h``; ``0``
  means "everything last updated before now". Capped at 150 years, as acr-cli caps it.
  acr-cli reads ``1.5d`` or ``3h2d`` as *zero* (``Sscanf`` fails, the days fall back
  to 0, the rest is dropped), which silently selects everything; here both are
  errors. A negative duration (acr-cli: a cutoff in the future, so content pushed
  while the purge runs is eligible too) is refused: ``0`` already means everything.
* ``--filter REPO-REGEX:TAG-REGEX``: the separator is the one colon outside a
  character class, an escape or a group's ``(?flags:`` prefix. The repository
  regex must match the whole name; acr-cli wraps it as ``^`` + regex + ``$``, so
  ``a|b`` became ``^a|b$`` and matched ``apps`` and ``web/b``; here it is
  ``fullmatch``. The tag regex is searched, not anchored (acr-cli's ``app:hello``
  untags ``say-hello-2``); write ``^v1$`` for one tag. Several filters naming the
  same repository combine: a tag goes if any of their tag regexes finds it.
* Tags: a tag is eligible when a tag regex finds it, it was last updated before
  the cutoff, and it is not locked (``deleteEnabled`` and ``writeEnabled`` both
  true) unless ``--include-locked``. ``--keep N`` keeps the N most recently
  updated *eligible* tags of each repository (so a locked or recent tag never
  uses up a place).
* Untagged manifests (``--untagged``, ``--untagged-only``): a manifest with no tag
  left after the tag pass, last updated before the cutoff (an unknown time keeps
  it), not locked unless ``--include-locked``; ``--keep N`` keeps the N most recent
  of them too (acr-cli applies ``keep`` to both passes). A manifest that stays
  keeps every manifest an index among them lists, at any depth: acr-cli forgets
  this for a *locked* index, and for an index that ``--keep`` keeps (it decides
  the children before applying ``keep``), so both lost their children.
* Referrers (signatures, SBOMs: manifests with a ``subject``): ACR deletes a
  manifest's referrers itself when the manifest goes, so acr-cli never deletes an
  untagged referrer. hamn's server does not cascade, so purge does: an untagged,
  unlocked referrer goes with its subject (whatever its age), and stays while the
  subject stays. A referrer whose subject is no longer in the repository is an
  ordinary untagged manifest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

#: The longest ``--ago`` honoured (acr-cli's cap: 150 years of 365 days).
MAX_AGO = timedelta(days=150 * 365)

_DURATION_UNITS: Mapping[str, Decimal] = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_DAYS = re.compile(r"(\d+)d")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|h|m|s)")
AGO_HELP = (
    "a duration such as 2d3h6m, 1d, 12h, 90m or 1.5h: whole days then a Go duration "
    "(units h, m, s, ms, us, ns); 0 means everything"
)


class RuleError(ValueError):
    """A ``--ago`` or ``--filter`` value that cannot be read; the message says why."""


@dataclass(frozen=True, slots=True)
class Ago:
    """A parsed ``--ago``: the duration, and whether it was cut to :data:`MAX_AGO`."""

    duration: timedelta
    capped: bool = False


def parse_ago(text: str) -> Ago:
    """``--ago`` as a duration (see the module docstring for the grammar)."""
    value = text.strip()
    if not value:
        raise RuleError(f"--ago is empty; give {AGO_HELP}")
    if value.startswith(("-", "+")):
        raise RuleError(f"--ago '{text}' has a sign; give {AGO_HELP}")
    if value == "0":
        return Ago(timedelta(0))
    seconds = Decimal(0)
    rest = value
    days = _DAYS.match(rest)
    if days:
        seconds += Decimal(days.group(1)) * 86400
        rest = rest[days.end() :]
    while rest:
        part = _GO_PART.match(rest)
        if part is None:
            raise RuleError(f"--ago '{text}' is not a duration; give {AGO_HELP}")
        try:
            seconds += Decimal(part.group(1)) * _DURATION_UNITS[part.group(2)]
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            raise RuleError(f"--ago '{text}' is not a duration; give {AGO_HELP}") from None
        rest = rest[part.end() :]
    if seconds > Decimal(MAX_AGO.total_seconds()):
        return Ago(MAX_AGO, capped=True)
    return Ago(timedelta(seconds=float(seconds)))


# ------------------------------------------------------------------ --filter


@dataclass(frozen=True, slots=True)
class Filter:
    """One ``--filter``: the repository regex (whole name) and the tag regex (searched)."""

    text: str
    repository: re.Pattern[str]
    tag: re.Pattern[str]

    def matches_repository(self, name: str) -> bool:
        """Whether the repository regex matches all of ``name``."""
        return self.repository.fullmatch(name) is not None

    def matches_tag(self, tag: str) -> bool:
        """Whether the tag regex finds ``tag`` (anywhere in it, as acr-cli matches)."""
        return self.tag.search(tag) is not None


def _separators(text: str) -> list[int]:
    """Positions of the colons that may separate the repository and tag regexes: not
    escaped, not inside ``[...]`` and not closing a group prefix such as ``(?i:``."""
    found: list[int] = []
    i = 0
    in_class = False
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            # ``[]...]`` and ``[^]...]``: a ``]`` first in the class is a literal.
            j = i + 1
            if j < len(text) and text[j] == "^":
                j += 1
            if j < len(text) and text[j] == "]":
                i = j
        elif ch == "(" and text.startswith("(?", i):
            prefix = re.match(r"\(\?[a-zA-Z-]*:", text[i:])
            if prefix:
                i += prefix.end()
                continue
        elif ch == ":":
            found.append(i)
        i += 1
    return found


def _compile(kind: str, pattern: str, text: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise RuleError(
            f"--filter '{text}': the {kind} regex '{pattern}' is not a valid regular "
            f"expression ({exc})"
        ) from None


def parse_filter(text: str) -> Filter:
    """``REPO-REGEX:TAG-REGEX`` as a :class:`Filter`."""
    example = "e.g. 'hello-world:^v1\\..*' or '.*:.*'"
    colons = _separators(text)
    if not colons:
        raise RuleError(f"--filter '{text}' has no ':'; give REPOSITORY-REGEX:TAG-REGEX, {example}")
    if len(colons) > 1:
        raise RuleError(
            f"--filter '{text}' has more than one ':' outside a group or character class; "
            f"give one REPOSITORY-REGEX:TAG-REGEX, {example}"
        )
    repo, tag = text[: colons[0]], text[colons[0] + 1 :]
    if not repo:
        raise RuleError(f"--filter '{text}' has no repository regex before ':'; {example}")
    if not tag:
        raise RuleError(
            f"--filter '{text}' has no tag regex after ':'; {example} "
            "(use '^$' to match no tag, e.g. with --untagged)"
        )
    return Filter(text, _compile("repository", repo, text), _compile("tag", tag, text))


def select_repositories(
    repositories: Iterable[str], filters: Sequence[Filter]
) -> dict[str, list[Filter]]:
    """Each repository some filter matches, with the filters that match it (sorted by name)."""
    chosen: dict[str, list[Filter]] = {}
    for name in sorted(set(repositories)):
        matching = [f for f in filters if f.matches_repository(name)]
        if matching:
            chosen[name] = matching
    return chosen


# ------------------------------------------------------------------ tags


@dataclass(frozen=True, slots=True)
class TagEntry:
    """A tag as ``/acr/v1/<repo>/_tags`` lists it."""

    name: str
    digest: str
    last_update: datetime | None
    locked: bool = False


@dataclass(frozen=True, slots=True)
class TagPlan:
    """The tags to delete (newest first) and the eligible ones that stay, and why."""

    delete: tuple[TagEntry, ...]
    kept: tuple[TagEntry, ...] = ()
    locked: tuple[TagEntry, ...] = ()


def plan_tags(
    tags: Iterable[TagEntry],
    filters: Sequence[Filter],
    cutoff: datetime,
    *,
    keep: int = 0,
    include_locked: bool = False,
) -> TagPlan:
    """The tags a filter finds, updated before ``cutoff``, unlocked (or ``include_locked``),
    less the ``keep`` most recently updated of them."""
    eligible: list[TagEntry] = []
    locked: list[TagEntry] = []
    for tag in tags:
        if not any(f.matches_tag(tag.name) for f in filters):
            continue
        if tag.last_update is None or tag.last_update >= cutoff:
            continue
        if tag.locked and not include_locked:
            locked.append(tag)
            continue
        eligible.append(tag)
    eligible.sort(key=_newest_first)
    kept = eligible[:keep] if keep > 0 else []
    return TagPlan(tuple(eligible[len(kept) :]), tuple(kept), tuple(locked))


def _newest_first(tag: TagEntry) -> tuple[float, str]:
    assert tag.last_update is not None
    return (-tag.last_update.timestamp(), tag.name)


# ------------------------------------------------------------------ manifests


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """A manifest as ``/acr/v1/<repo>/_manifests`` lists it, plus its ``subject``.

    ``references`` are the manifests an index lists (empty for an image).
    ``subject`` is the digest a referrer refers to; ``subject_known`` is False when
    its body could not be read, and such a manifest is never deleted.
    """

    digest: str
    tags: tuple[str, ...] = ()
    last_update: datetime | None = None
    media_type: str | None = None
    locked: bool = False
    references: tuple[str, ...] = ()
    subject: str | None = None
    subject_known: bool = True


@dataclass(frozen=True, slots=True)
class ManifestPlan:
    """The manifests to delete, in waves: a wave starts only once the waves before it
    are done, and a manifest is deleted only if what it depends on was deleted (a
    child after every index listing it, a referrer after its subject)."""

    waves: tuple[tuple[str, ...], ...]
    #: For each manifest to delete, the manifests whose deletion it waits for.
    after: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: Untagged manifests that would have gone but for a lock.
    locked: tuple[str, ...] = ()
    #: Untagged manifests kept by ``--keep``.
    kept: tuple[str, ...] = ()

    @property
    def delete(self) -> tuple[str, ...]:
        """Every manifest to delete, in order."""
        return tuple(d for wave in self.waves for d in wave)


def untagged_after(manifests: Iterable[ManifestEntry], deleted_tags: Iterable[str]) -> set[str]:
    """Digests of the manifests with no tag left once ``deleted_tags`` are gone."""
    gone = set(deleted_tags)
    return {m.digest for m in manifests if not (set(m.tags) - gone)}


def plan_manifests(
    manifests: Sequence[ManifestEntry],
    deleted_tags: Iterable[str],
    cutoff: datetime,
    *,
    keep: int = 0,
    include_locked: bool = False,
) -> ManifestPlan:
    """The untagged manifests to delete once ``deleted_tags`` are gone (module docstring)."""
    by_digest = {m.digest: m for m in manifests}
    untagged = untagged_after(manifests, deleted_tags)
    own: set[str] = set()  # candidates in their own right
    follows: set[str] = set()  # referrers that go if, and only if, their subject goes
    locked: set[str] = set()
    for m in manifests:
        if m.digest not in untagged or not m.subject_known:
            continue
        attached = m.subject is not None and m.subject in by_digest
        old = m.last_update is not None and m.last_update < cutoff
        if not attached and not old:
            continue
        if m.locked and not include_locked:
            locked.add(m.digest)
            continue
        (follows if attached else own).add(m.digest)
    doomed = _settle(by_digest, own | follows, follows)
    kept: list[str] = []
    if keep > 0:
        ranked = sorted((by_digest[d] for d in doomed & own), key=_manifest_newest_first)
        kept = [m.digest for m in ranked[:keep]]
        doomed = _settle(by_digest, doomed - set(kept), follows)
    # A locked referrer is worth naming only when its subject goes without it.
    held = {
        d for d in locked if by_digest[d].subject not in by_digest or by_digest[d].subject in doomed
    }
    after = _dependencies(by_digest, doomed)
    return ManifestPlan(_waves(doomed, after), after, tuple(sorted(held)), tuple(kept))


def _settle(
    by_digest: Mapping[str, ManifestEntry], doomed: set[str], follows: set[str]
) -> set[str]:
    """Drop from ``doomed`` what a staying manifest needs, until nothing changes: the
    manifests a staying index lists and the referrers of a staying subject."""
    doomed = set(doomed)
    while True:
        needed: set[str] = set()
        for m in by_digest.values():
            if m.digest not in doomed:
                needed.update(m.references)
        drop = {d for d in doomed if d in needed}
        drop |= {d for d in doomed & follows if by_digest[d].subject not in doomed}
        if not drop:
            return doomed
        doomed -= drop


def _manifest_newest_first(m: ManifestEntry) -> tuple[float, str]:
    # acr-cli ranks an unreadable time as oldest; here such a manifest is never a
    # candidate, so every time is known.
    assert m.last_update is not None
    return (-m.last_update.timestamp(), m.digest)


def _dependencies(
    by_digest: Mapping[str, ManifestEntry], doomed: set[str]
) -> dict[str, frozenset[str]]:
    needs: dict[str, set[str]] = {d: set() for d in doomed}
    for d in doomed:
        m = by_digest[d]
        for child in m.references:
            if child in needs and child != d:
                needs[child].add(d)  # an index goes before what it lists
        if m.subject in needs and m.subject != d:
            needs[d].add(m.subject)  # a subject goes before its referrers
    return {d: frozenset(s) for d, s in needs.items()}


def _waves(doomed: set[str], after: Mapping[str, frozenset[str]]) -> tuple[tuple[str, ...], ...]:
    waves: list[tuple[str, ...]] = []
    done: set[str] = set()
    left = set(doomed)
    while left:
        ready = sorted(d for d in left if after[d] <= done)
        if not ready:  # a cycle (an index listing its own referrer): finish it in one wave
            ready = sorted(left)
        waves.append(tuple(ready))
        done.update(ready)
        left.difference_update(ready)
    return tuple(waves)
