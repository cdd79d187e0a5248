"""``hamn purge``: ACR's ``acr purge`` (github.com/Azure/acr-cli), a client of ``/acr/v1``.

Like acr-cli it works only through the registry's data-plane APIs: the catalog,
``/acr/v1`` listings (``lastUpdateTime``, ``orderby``, paging), ``PATCH`` of the
changeable attributes (``--include-locked``), ``DELETE /acr/v1/<repo>/_tags/<tag>``
and ``DELETE /acr/v1/<repo>/_manifests/<digest>``, and ``GET /v2/<repo>/manifests``
to read a candidate's ``subject``. What is selected is decided in
:mod:`hamn.cli.purge_rules` (acr-cli's rules, and where it departs from them).

Per repository (sorted by name): first the tag pass (``--filter``, ``--ago``,
``--keep``), then with ``--untagged`` or ``--untagged-only`` the manifests left
without tags. Where this differs from acr-cli, and why:

* A repository that is itself locked is skipped with a warning naming the
  command that unlocks it (acr-cli tries every delete and gets 405s);
  ``--include-locked`` unlocks tags and manifests, never a repository.
* Untagged manifests are deleted in waves so that a failure never breaks what
  stays: an index before the manifests it lists, a subject before its
  referrers, and nothing whose index or subject failed to go. Just before a
  manifest is deleted it is read again; one tagged since the listing stays,
  since deleting a manifest takes its tags along.
* A delete the server refuses with 405 (locked since the listing) is reported
  under ``skipped``; a 404 (gone already) counts as deleted, as in acr-cli. Any
  other refusal stops the purge and says which repositories were done.
* ``--concurrency`` outside 1..32 is a usage error (acr-cli quietly resets it).

The result (``-o json`` etc.) lists per repository what was deleted, or with
``--dry-run`` what would be: ``[{repository, tagsDeleted, manifestsDeleted,
skipped[{image, reason}], dryRun}]``. acr-cli's progress lines and summary
("Number of deleted tags: N", "Number of deleted manifests: M") go to stderr.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from hamn.cli.client import RegistryClient, RegistryError
from hamn.cli.commands.repository import catalog
from hamn.cli.context import (
    HamnGroup,
    Invocation,
    command,
    describe,
    log,
    registry_option,
    usage_error,
)
from hamn.cli.errors import CLIError
from hamn.cli.purge_rules import (
    Ago,
    Filter,
    ManifestEntry,
    ManifestPlan,
    RuleError,
    TagEntry,
    TagPlan,
    parse_ago,
    parse_filter,
    plan_manifests,
    plan_tags,
    select_repositories,
    untagged_after,
)

T = TypeVar("T")

#: acr-cli's ceiling on parallel deletes ("the max recommended by ACR server").
MAX_CONCURRENCY = 32
DEFAULT_CONCURRENCY = max(1, min(MAX_CONCURRENCY, os.cpu_count() or 1))
#: Media types whose body may carry a ``subject`` (acr-cli reads the same three).
SUBJECT_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.artifact.manifest.v1+json",
    }
)
_ACCEPT = ", ".join(
    sorted(
        SUBJECT_TYPES
        | {
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    )
)
_UNLOCK = {"deleteEnabled": True, "writeEnabled": True}
PERMISSIONS = (
    "purge lists the repositories (AcrPull, AcrPush, Reader, Contributor or Owner on the "
    "registry), reads tags and manifests (metadata_read and pull: AcrPull, AcrPush, Reader), "
    "and deletes (delete: AcrDelete, Contributor or Owner); --include-locked also unlocks "
    "(metadata_write: AcrPush, Contributor or Owner). Contributor alone allows all of it: "
    "hamn role assignment create --role Contributor --assignee <you> --scope /registries/{r}"
)
DRY_RUN_NOTICE = (
    "DRY RUN: The following output shows what WOULD be deleted if the purge command was "
    "executed. Nothing is deleted."
)


_SAY_LOCK = threading.Lock()


def say(message: str) -> None:
    """A progress line on stderr, as acr-cli prints them (not with --only-show-errors)."""
    if log.isEnabledFor(logging.WARNING):  # --only-show-errors raises the level past it
        with _SAY_LOCK:
            click.echo(message, err=True)


def purge_table(result: Any) -> Any:
    """``-o table``: one row per repository with the counts."""
    rows = []
    for entry in result if isinstance(result, list) else []:
        rows.append(
            OrderedDict(
                [
                    ("REPOSITORY", str(entry.get("repository", ""))),
                    ("TAGS", str(len(entry.get("tagsDeleted") or []))),
                    ("MANIFESTS", str(len(entry.get("manifestsDeleted") or []))),
                    ("SKIPPED", str(len(entry.get("skipped") or []))),
                ]
            )
        )
    return rows


# ------------------------------------------------------------------ reading


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _locks(attributes: Any) -> list[str]:
    """The delete-blocking locks in ``changeableAttributes`` (``deleteEnabled=false`` ...)."""
    if not isinstance(attributes, Mapping):
        return []
    return [
        f"{key}=false" for key in ("deleteEnabled", "writeEnabled") if attributes.get(key) is False
    ]


def tag_entries(raw: Iterable[Any]) -> tuple[list[TagEntry], dict[str, list[str]]]:
    """Tags from a ``/_tags`` listing, and the locks of each locked one."""
    entries: list[TagEntry] = []
    locks: dict[str, list[str]] = {}
    for item in raw:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        held = _locks(item.get("changeableAttributes"))
        if held:
            locks[str(item["name"])] = held
        entries.append(
            TagEntry(
                str(item["name"]),
                str(item.get("digest") or ""),
                _time(item.get("lastUpdateTime")),
                bool(held),
            )
        )
    return entries, locks


def manifest_entries(raw: Iterable[Any]) -> tuple[list[ManifestEntry], dict[str, list[str]]]:
    """Manifests from a ``/_manifests`` listing (no subjects yet), and their locks."""
    entries: list[ManifestEntry] = []
    locks: dict[str, list[str]] = {}
    for item in raw:
        if not isinstance(item, Mapping) or not item.get("digest"):
            continue
        digest = str(item["digest"])
        held = _locks(item.get("changeableAttributes"))
        if held:
            locks[digest] = held
        references = tuple(
            str(ref["digest"])
            for ref in item.get("references") or []
            if isinstance(ref, Mapping) and ref.get("digest")
        )
        entries.append(
            ManifestEntry(
                digest,
                tuple(str(t) for t in item.get("tags") or []),
                _time(item.get("lastUpdateTime")),
                item.get("mediaType"),
                bool(held),
                references,
            )
        )
    return entries, locks


# ------------------------------------------------------------------ one run


@dataclass
class RepositoryResult:
    """What happened (or would) in one repository."""

    repository: str
    dry_run: bool
    tags: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, image: str, reason: str) -> None:
        """Record (and say) that ``image`` stays, and why."""
        self.skipped.append({"image": image, "reason": reason})
        say(f"Skipped {image}: {reason}")

    def json(self) -> dict[str, Any]:
        """The result's JSON form."""
        return {
            "repository": self.repository,
            "tagsDeleted": self.tags,
            "manifestsDeleted": self.manifests,
            "skipped": self.skipped,
            "dryRun": self.dry_run,
        }


class PurgeStopped(Exception):
    """A refusal that ends the purge (not a 404 or a lock): the server's error."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(error.describe())
        self.error = error


@dataclass
class Purge:
    """One ``hamn purge`` run over the repositories of one registry."""

    client: RegistryClient
    registry: str
    cutoff: datetime
    keep: int
    untagged: bool
    untagged_only: bool
    include_locked: bool
    dry_run: bool
    pool: ThreadPoolExecutor

    def _map(self, func: Callable[[str], T], items: Sequence[str]) -> list[T]:
        """``func`` over ``items``, ``--concurrency`` at a time; the first error is raised."""
        return list(self.pool.map(func, items))

    def repository(self, repo: str, filters: Sequence[Filter]) -> RepositoryResult:
        """Purge one repository (see the module docstring)."""
        result = RepositoryResult(repo, self.dry_run)
        try:
            self._repository(repo, filters, result)
        except RegistryError as exc:
            # Only a listing lets a 404 through: the repository went since the catalog.
            if exc.status != 404:
                raise
            say(f"{repo} repository not found")
        return result

    def _repository(self, repo: str, filters: Sequence[Filter], result: RepositoryResult) -> None:
        client = self.client
        info = client.get_json(client.acr_path(repo))
        held = _locks(info.get("changeableAttributes") if isinstance(info, Mapping) else None)
        if held:
            options = " ".join(f"--{lock.split('Enabled')[0]}-enabled true" for lock in held)
            result.skip(
                repo,
                f"the repository is locked ({', '.join(held)}); unlock it with 'hamn repository "
                f"update -n {self.registry} --repository {repo} {options}'",
            )
            return
        deleted_tags: list[str] = []
        if not self.untagged_only:
            deleted_tags = self._tags(repo, filters, result)
        if self.untagged or self.untagged_only:
            self._manifests(repo, deleted_tags, result)

    # -- tags ----------------------------------------------------------------------
    def _tags(self, repo: str, filters: Sequence[Filter], result: RepositoryResult) -> list[str]:
        client = self.client
        say(f"{'Would delete' if self.dry_run else 'Deleting'} tags for repository: {repo}")
        raw = client.list_all(
            client.acr_path(repo, "_tags"), "tags", params={"orderby": "timedesc"}
        )
        tags, locks = tag_entries(raw)
        plan: TagPlan = plan_tags(
            tags, filters, self.cutoff, keep=self.keep, include_locked=self.include_locked
        )
        for tag in plan.locked:
            result.skip(
                f"{repo}:{tag.name}",
                f"locked ({', '.join(locks[tag.name])}); --include-locked unlocks and deletes it",
            )
        names = [tag.name for tag in plan.delete]
        if self.dry_run:
            for name in names:
                say(f"Would delete: {repo}:{name}")
            result.tags = names
            return names

        def delete(name: str) -> str | None:
            ref = f"{repo}:{name}"
            if name in locks:
                self._unlock(client.acr_path(repo, "_tags", name), ref)
            return self._delete(client.acr_path(repo, "_tags", name), ref, result)

        outcomes = self._map(delete, names)
        result.tags = [name for name, outcome in zip(names, outcomes, strict=True) if outcome]
        return result.tags

    # -- manifests -----------------------------------------------------------------
    def _manifests(self, repo: str, deleted_tags: list[str], result: RepositoryResult) -> None:
        client = self.client
        say(f"{'Would delete' if self.dry_run else 'Deleting'} manifests for repository: {repo}")
        raw = client.list_all(client.acr_path(repo, "_manifests"), "manifests")
        manifests, locks = manifest_entries(raw)
        untagged = untagged_after(manifests, deleted_tags)
        readable = [
            m
            for m in manifests
            if m.digest in untagged
            and m.media_type in SUBJECT_TYPES
            and (self.include_locked or not m.locked)
        ]
        read = {m.digest: m for m in self.pool.map(lambda m: self._with_subject(repo, m), readable)}
        entries = [read.get(m.digest, m) for m in manifests]
        plan: ManifestPlan = plan_manifests(
            entries, deleted_tags, self.cutoff, keep=self.keep, include_locked=self.include_locked
        )
        for digest in plan.locked:
            result.skip(
                f"{repo}@{digest}",
                f"locked ({', '.join(locks[digest])}); --include-locked unlocks and deletes it",
            )
        if self.dry_run:
            for digest in plan.delete:
                say(f"Would delete: {repo}@{digest}")
            result.manifests = list(plan.delete)
            return
        gone: set[str] = set()
        by_digest = {m.digest: m for m in entries}
        for wave in plan.waves:

            def delete(digest: str) -> str | None:
                ref = f"{repo}@{digest}"
                waiting = sorted(plan.after.get(digest, frozenset()) - gone)
                if waiting:
                    result.skip(ref, f"kept because {waiting[0]} it depends on was not deleted")
                    return None
                if not self._still_untagged(repo, digest, ref, result):
                    return None
                if by_digest[digest].locked:
                    self._unlock(client.acr_path(repo, "_manifests", digest), ref)
                return self._delete(client.acr_path(repo, "_manifests", digest), ref, result)

            for digest, outcome in zip(wave, self._map(delete, wave), strict=True):
                if outcome:
                    gone.add(digest)
                    result.manifests.append(digest)

    def _with_subject(self, repo: str, manifest: ManifestEntry) -> ManifestEntry:
        """``manifest`` with the ``subject`` its body names (``subject_known`` False when
        the body cannot be read: such a manifest stays)."""
        client = self.client
        ref = f"{repo}@{manifest.digest}"
        try:
            response = client.request(
                "GET",
                client.v2_path(repo, "manifests", manifest.digest),
                headers={"Accept": _ACCEPT},
            )
            doc = response.json()
        except RegistryError as exc:
            if exc.status in (401, 403):
                raise PurgeStopped(exc) from None
            log.warning("Keeping %s: its manifest cannot be read (%s).", ref, exc.describe())
            return replace(manifest, subject_known=False)
        except ValueError:
            log.warning("Keeping %s: its manifest is not JSON.", ref)
            return replace(manifest, subject_known=False)
        subject = doc.get("subject") if isinstance(doc, Mapping) else None
        found = subject.get("digest") if isinstance(subject, Mapping) else None
        return replace(manifest, subject=str(found) if found else None)

    def _still_untagged(self, repo: str, digest: str, ref: str, result: RepositoryResult) -> bool:
        try:
            body = self.client.get_json(self.client.acr_path(repo, "_manifests", digest))
        except RegistryError as exc:
            if exc.status == 404:
                return True  # gone already: the delete will say so
            raise PurgeStopped(exc) from None
        manifest = body.get("manifest") if isinstance(body, Mapping) else None
        tags = (manifest or {}).get("tags") or []
        if tags:
            result.skip(ref, f"tagged since the listing ({', '.join(map(str, tags))})")
            return False
        return True

    # -- requests ------------------------------------------------------------------
    def _unlock(self, path: str, ref: str) -> None:
        try:
            self.client.request("PATCH", path, json_body=_UNLOCK)
        except RegistryError as exc:
            if exc.status in (401, 403):
                raise PurgeStopped(exc) from None
            log.warning(
                "Failed to unlock %s (%s). Will attempt deletion anyway.", ref, exc.describe()
            )
            return
        say(f"Unlocked {ref}")

    def _delete(self, path: str, ref: str, result: RepositoryResult) -> str | None:
        """DELETE one tag or manifest; ``ref`` when it is gone, None when it stays."""
        try:
            self.client.request("DELETE", path)
        except RegistryError as exc:
            if exc.status == 404:
                say(f"Skipped {ref}, HTTP status: 404 (deleted already)")
                return ref
            if exc.status == 405:
                result.skip(ref, exc.describe())
                return None
            raise PurgeStopped(exc) from None
        say(f"Deleted {ref}")
        return ref


# ------------------------------------------------------------------ the command


@click.group("purge", cls=HamnGroup)
def purge_commands() -> None:
    """Purge (its command is added to ``hamn`` itself)."""


def _stopped(
    exc: RegistryError, registry: str, failed: str, done: Sequence[str], left: Sequence[str]
) -> CLIError:
    if exc.status == 403:
        text = f"{exc.describe()}. {PERMISSIONS.format(r=registry)}"
    else:
        text = describe(exc)
    progress = f"Purge stopped in repository '{failed}'. Completed repositories: " + (
        ", ".join(done) if done else "none"
    )
    if left:
        progress += f". Not yet processed: {', '.join(left)}"
    return CLIError(f"{text}\n{progress}.")


@command(purge_commands, "purge", table=purge_table)
@registry_option("-r", "--registry")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    metavar="REPO-REGEX:TAG-REGEX",
    help="The repositories (regex matching the whole name) and tags (regex found in the "
    "name) to purge, e.g. 'hello-world:^v1\\.'. Repeatable.",
)
@click.option(
    "--ago",
    metavar="DURATION",
    help="Delete what was last updated longer ago than this: [days]d[Go duration], e.g. "
    "2d3h6m, 12h, 0 (everything). Required unless --untagged-only.",
)
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Keep the N most recent tags (and untagged manifests) that would otherwise be deleted, "
    "per repository.",
)
@click.option(
    "--untagged",
    is_flag=True,
    help="After deleting tags, delete the manifests left without tags (never one an index "
    "that stays lists, nor a referrer of a manifest that stays).",
)
@click.option(
    "--untagged-only",
    is_flag=True,
    help="Delete only untagged manifests, no tags; --filter (only its repository part is "
    "used) and --ago are optional.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.option(
    "--include-locked",
    is_flag=True,
    help="Unlock locked tags and manifests (deleteEnabled or writeEnabled false), then "
    "delete them. A locked repository is always skipped.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help=f"Requests in flight at once (1-{MAX_CONCURRENCY}).",
)
def purge(
    inv: Invocation,
    registry: str,
    filters: tuple[str, ...],
    ago: str | None,
    keep: int,
    untagged: bool,
    untagged_only: bool,
    dry_run: bool,
    include_locked: bool,
    concurrency: int,
) -> list[dict[str, Any]]:
    """Delete old tags and untagged manifests, as ACR's 'acr purge' does.

    Examples: 'hamn purge -r myregistry --filter "hello-world:.*" --ago 7d --keep 2';
    'hamn purge -r myregistry --filter ".*:^$" --ago 0 --untagged --dry-run';
    'hamn purge -r myregistry --untagged-only'.
    """
    if untagged and untagged_only:
        raise usage_error("--untagged and --untagged-only exclude each other; give one of them")
    if not untagged_only and not filters:
        raise usage_error(
            "--filter is required when not using --untagged-only, e.g. --filter 'hello:.*'"
        )
    if not untagged_only and ago is None:
        raise usage_error("--ago is required when not using --untagged-only, e.g. --ago 7d")
    try:
        parsed = [parse_filter(text) for text in filters]
        age = parse_ago(ago) if ago is not None else Ago(parse_ago("0").duration)
    except RuleError as exc:
        raise usage_error(str(exc)) from None
    if age.capped:
        inv.warn("--ago exceeds the maximum of 150 years; using 150 years.")
    cutoff = datetime.now(UTC) - age.duration
    client = inv.client(registry)
    try:
        names = catalog(client, registry, None)
    except RegistryError as exc:
        if exc.status == 404:
            raise CLIError(
                f"Registry '{registry}' was not found on {client.server}. 'hamn list' shows "
                "the registries you can see."
            ) from None
        if exc.status == 403:
            raise CLIError(f"{exc.describe()}. {PERMISSIONS.format(r=registry)}") from None
        raise
    if filters:
        selected = select_repositories(names, parsed)
    else:
        selected = {name: [] for name in sorted(set(names))}
    if dry_run:
        say(DRY_RUN_NOTICE)
    results: list[RepositoryResult] = []
    repos = list(selected)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="purge") as pool:
        run = Purge(
            client, registry, cutoff, keep, untagged, untagged_only, include_locked, dry_run, pool
        )
        for index, repo in enumerate(repos):
            try:
                results.append(run.repository(repo, selected[repo]))
            except PurgeStopped as exc:
                _summary(results, dry_run)
                raise _stopped(
                    exc.error, registry, repo, repos[:index], repos[index + 1 :]
                ) from None
            except RegistryError as exc:
                _summary(results, dry_run)
                raise _stopped(exc, registry, repo, repos[:index], repos[index + 1 :]) from None
    _summary(results, dry_run)
    return [r.json() for r in results]


def _summary(results: Sequence[RepositoryResult], dry_run: bool) -> None:
    tags = sum(len(r.tags) for r in results)
    manifests = sum(len(r.manifests) for r in results)
    if dry_run:
        say(f"\nNumber of tags to be deleted: {tags}")
        say(f"Number of manifests to be deleted: {manifests}")
    else:
        say(f"\nNumber of deleted tags: {tags}")
        say(f"Number of deleted manifests: {manifests}")
