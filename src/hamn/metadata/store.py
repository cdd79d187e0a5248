"""The metadata store: transactional queries returning plain values.

Queries are synchronous SQLAlchemy Core, run on a small thread pool so the
event loop never waits on the database. Every write that must be all-or-nothing
(a manifest with its references and tag, a blob link with its repository) is one
transaction; on SQLite, write transactions start with ``BEGIN IMMEDIATE`` so
two writers queue on the lock instead of failing an upgrade mid-transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import os
import queue
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

from hamn.metadata import schema as t
from hamn.metadata.models import (
    AffectedContent,
    AttributeChanges,
    ChangeableAttributes,
    DeletedManifest,
    DeletedRepository,
    DeletedTag,
    ListOrder,
    ManifestInfo,
    ManifestRecord,
    PurgedManifest,
    Referrer,
    Registry,
    RepositoryInfo,
    RestoreOutcome,
    TagInfo,
    Upload,
)

P = ParamSpec("P")
R = TypeVar("R")

#: A service's check of what a write would change (raises to refuse the write).
Guard = Callable[[AffectedContent], None]

#: The changeable attributes' columns, in ChangeableAttributes' field order.
ATTRIBUTE_NAMES = ("delete_enabled", "write_enabled", "read_enabled", "list_enabled")


class MissingReferences(Exception):
    """A manifest names blobs or manifests that the repository does not hold."""

    def __init__(self, blobs: Sequence[str], manifests: Sequence[str]) -> None:
        super().__init__(f"missing blobs {list(blobs)} and manifests {list(manifests)}")
        self.blobs = list(blobs)
        self.manifests = list(manifests)


class MetadataUnavailable(Exception):
    """The database cannot be reached or is busy (a PostgreSQL restart, a lost
    connection, SQLite's lock held too long): the request may be retried. Raised in
    place of the driver's exception, so callers never learn SQLAlchemy's."""


def _unavailable(exc: DBAPIError, dialect: str) -> bool:
    """Whether ``exc`` means "the database is not answering now" rather than a bug."""
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if dialect != "sqlite":
        return True  # connection refused, server shutting down, admin shutdown...
    # On SQLite an OperationalError is also "no such table": only lock and I/O trouble
    # is the database being unavailable.
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text or "disk i/o" in text


class UploadConflict(Exception):
    """The upload's offset moved under us (another request wrote to it)."""


class QuotaExceeded(Exception):
    """A write would take the registry's usage past its quota; nothing was stored.

    ``usage`` is the registry's usage before the write, ``adding`` what the write
    would have added, ``quota`` the limit, all in bytes.
    """

    def __init__(self, usage: int, adding: int, quota: int) -> None:
        super().__init__(f"usage {usage} + {adding} bytes would pass the quota of {quota}")
        self.usage = usage
        self.adding = adding
        self.quota = quota


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything hamn stores is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _timestamp(value: datetime | str) -> datetime:
    # Raw SQLite rows carry the ISO text SQLAlchemy stored; other paths carry datetimes.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _aware(value)


def _attribute_cols(table: Any) -> tuple[Any, ...]:
    return tuple(table.c[name] for name in ATTRIBUTE_NAMES)


def _attributes(values: Sequence[Any]) -> ChangeableAttributes:
    """Four flag values (SQLite's 0/1 or booleans) as ChangeableAttributes."""
    return ChangeableAttributes(*(bool(v) for v in values[:4]))


def create_metadata_engine(
    url: str, *, sqlite_synchronous: str = "NORMAL", pooled: bool = True
) -> Engine:
    """An engine for ``url`` with hamn's connection settings (WAL, busy timeout, FKs on SQLite)."""
    if url.startswith("sqlite"):
        pool_args: dict[str, Any] = (
            {"pool_size": 8, "max_overflow": 8} if pooled else {"poolclass": NullPool}
        )
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **pool_args
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Autocommit at the driver level: SQLAlchemy's "begin" hook issues BEGIN itself.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writes take the write lock up front; reads run in autocommit (WAL
            # readers see a consistent snapshot per statement and never block).
            if conn.get_execution_options().get("hamn_write", False):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


#: The PostgreSQL advisory lock key migrations hold (any fixed number hamn uses once).
_MIGRATION_LOCK = 0x68616D6E  # "hamn"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest version (idempotent; safe with several processes)."""
    cfg = AlembicConfig()
    cfg.set_main_option(
        "script_location", str(resources.files("hamn.metadata").joinpath("migrations"))
    )
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Serialise concurrent starters on SQLite's write lock.
            conn = conn.execution_options(hamn_write=True)
        else:
            # Serialise servers starting at once on one empty database: without the
            # lock both create alembic_version and the second start fails. Held until
            # the migration's transaction commits.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()


# Hot-path statements are built once: SQLAlchemy then reuses their compiled form
# and cache key instead of rebuilding both on every request.
_REGISTRY_BY_KEY = select(
    t.registries.c.id, t.registries.c.name, t.registries.c.created_at, t.registries.c.sku
).where(t.registries.c.name_key == bindparam("key"))
_MANIFEST_COLS = (
    t.manifests.c.id,
    t.manifests.c.digest,
    t.manifests.c.media_type,
    t.manifests.c.size,
    t.manifests.c.artifact_type,
    t.manifests.c.subject_digest,
    t.manifests.c.created_at,
)
_REPO_MATCH = (
    t.repositories.c.registry_id == bindparam("reg"),
    t.repositories.c.name == bindparam("repo"),
)
# The pull locks come with the row that finds the manifest: no second query per GET.
_MANIFEST_BY_TAG = (
    select(
        *_MANIFEST_COLS,
        t.repositories.c.read_enabled,
        t.manifests.c.read_enabled,
        t.tags.c.read_enabled,
    )
    .select_from(
        t.repositories.join(t.tags, t.tags.c.repository_id == t.repositories.c.id).join(
            t.manifests, t.manifests.c.id == t.tags.c.manifest_id
        )
    )
    .where(*_REPO_MATCH, t.tags.c.name == bindparam("ref"), t.manifests.c.deleted_at.is_(None))
)
_MANIFEST_BY_DIGEST = (
    select(*_MANIFEST_COLS, t.repositories.c.read_enabled, t.manifests.c.read_enabled, true())
    .select_from(
        t.repositories.join(t.manifests, t.manifests.c.repository_id == t.repositories.c.id)
    )
    .where(
        *_REPO_MATCH,
        t.manifests.c.digest == bindparam("ref"),
        t.manifests.c.deleted_at.is_(None),  # soft-deleted: in the recycle bin, not served
    )
)
_LINKED_BLOB_SIZE = (
    select(t.blobs.c.size)
    .select_from(
        t.repositories.join(
            t.repository_blobs, t.repository_blobs.c.repository_id == t.repositories.c.id
        ).join(t.blobs, t.blobs.c.digest == t.repository_blobs.c.digest)
    )
    .where(*_REPO_MATCH, t.repository_blobs.c.digest == bindparam("digest"))
)
_REPO_ID = select(t.repositories.c.id).where(*_REPO_MATCH)
#: Whether the registry's manifests reference the blob (1 or NULL) and its usage, at once.
_BLOB_QUOTA_STATE = select(
    select(t.registry_blob_refs.c.refs)
    .where(
        t.registry_blob_refs.c.registry_id == bindparam("reg"),
        t.registry_blob_refs.c.digest == bindparam("digest"),
    )
    .scalar_subquery(),
    select(t.registry_usage.c.bytes)
    .where(t.registry_usage.c.registry_id == bindparam("reg"))
    .scalar_subquery(),
)
_TAGS_PAGE = (
    select(t.tags.c.name)
    .where(
        t.tags.c.repository_id == bindparam("repo_id"),
        t.tags.c.name > bindparam("last"),
        t.tags.c.list_enabled,  # listEnabled=false hides a tag from listings
    )
    .order_by(t.tags.c.name)
    .limit(bindparam("limit"))
)
_REPOSITORIES_PAGE = (
    select(t.repositories.c.name)
    .where(
        t.repositories.c.registry_id == bindparam("reg"),
        t.repositories.c.name > bindparam("last"),
        t.repositories.c.list_enabled,  # listEnabled=false hides it from the catalog
        t.repositories.c.deleted_at.is_(None),  # soft-deleted as a whole
    )
    .order_by(t.repositories.c.name)
    .limit(bindparam("limit"))
)
#: "No limit" for paged listings, in a form both SQLite and PostgreSQL accept.
_NO_LIMIT = 2**62
_UPLOAD_BY_ID = select(
    t.uploads.c.id,
    t.uploads.c.registry_id,
    t.uploads.c.repository,
    t.uploads.c.size,
    t.uploads.c.created_at,
    t.uploads.c.updated_at,
).where(t.uploads.c.id == bindparam("id"))
_MANIFEST_CONTENT = select(t.manifests.c.content).where(t.manifests.c.id == bindparam("id"))


def _missing(
    conn: Connection, table: Any, repo_id: int, wanted: set[str], *, share: bool = False
) -> list[str]:
    """Digests in ``wanted`` that ``table`` (blob links or manifests) lacks for a repository.

    ``share`` keeps the rows found share-locked until the transaction ends (PostgreSQL;
    SQLite's writes are serial already): garbage collection locks a blob link before it
    re-checks and removes it, so a manifest write that found the link either commits
    its reference first (and garbage collection then sees it) or waits and finds the
    link gone (MissingReferences), never a manifest pointing at a removed blob.
    """
    if not wanted:
        return []
    q = select(table.c.digest).where(table.c.repository_id == repo_id, table.c.digest.in_(wanted))
    if table is t.manifests:
        q = q.where(table.c.deleted_at.is_(None))  # one in the recycle bin is not there
    if share:
        q = q.order_by(table.c.digest).with_for_update(read=True)
    have = set(conn.execute(q).scalars())
    return sorted(wanted - have)


def _reading(
    fn: Callable[Concatenate[MetadataStore, P], R],
) -> Callable[Concatenate[MetadataStore, P], Coroutine[Any, Any, R]]:
    """A read: inline on SQLite (a local, non-blocking WAL read costs less than a
    thread hop), on the thread pool for a networked database."""

    async def wrapper(self: MetadataStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._read(functools.partial(fn, self, *args, **kwargs))

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _writing(
    fn: Callable[Concatenate[MetadataStore, Connection, P], R],
) -> Callable[Concatenate[MetadataStore, P], Coroutine[Any, Any, R]]:
    """A write: the method body runs inside a write transaction the store provides.

    On SQLite, writes queue for the store's writer thread, which commits the
    writes waiting at that moment as one transaction, each in its own savepoint
    (group commit): one failing write is rolled back alone, and the per-commit
    cost is shared. On PostgreSQL each write is its own transaction on the pool.
    """

    async def wrapper(self: MetadataStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        def op(conn: Connection) -> R:
            return fn(self, conn, *args, **kwargs)

        return await self._submit_write(op)

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    return wrapper


#: The most writes one group commit takes.
_MAX_BATCH = 64

_WriteOp = tuple[Callable[[Connection], Any], "concurrent.futures.Future[Any]"]


class _WriteStatements:
    """The hot write statements, built once per store (their ON CONFLICT form is
    the dialect's), so a push does not rebuild them on every request."""

    def __init__(self, insert: Any) -> None:
        self.insert_repository = (
            insert(t.repositories)
            .values(
                registry_id=bindparam("p_reg"),
                name=bindparam("p_repo"),
                created_at=bindparam("p_now"),
                updated_at=bindparam("p_now"),
            )
            .on_conflict_do_nothing(index_elements=["registry_id", "name"])
        )
        self.insert_blob = (
            insert(t.blobs)
            .values(
                digest=bindparam("p_digest"),
                size=bindparam("p_size"),
                created_at=bindparam("p_now"),
            )
            .on_conflict_do_nothing(index_elements=["digest"])
        )
        # Linking again restarts the link's garbage-collection grace period: the
        # client that uploaded or mounted it is about to push a manifest naming it.
        link = insert(t.repository_blobs).values(
            repository_id=bindparam("p_repo_id"),
            digest=bindparam("p_digest"),
            created_at=bindparam("p_now"),
        )
        self.insert_link = link.on_conflict_do_update(
            index_elements=["repository_id", "digest"],
            set_={"created_at": link.excluded.created_at},
        )
        self.insert_upload = t.uploads.insert().values(
            id=bindparam("p_id"),
            registry_id=bindparam("p_reg"),
            repository=bindparam("p_repo"),
            size=0,
            created_at=bindparam("p_now"),
            updated_at=bindparam("p_now"),
        )
        self.advance_upload = (
            update(t.uploads)
            .where(t.uploads.c.id == bindparam("p_id"), t.uploads.c.size == bindparam("p_old"))
            .values(size=bindparam("p_new"), updated_at=bindparam("p_now"))
        )
        self.delete_upload = delete(t.uploads).where(t.uploads.c.id == bindparam("p_id"))


class MetadataStore:
    """All metadata reads and writes hamn's services need."""

    def __init__(self, engine: Engine, *, threads: int = 8) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite has one writer at a time: one thread per process writes, so
        # writers never contend inside a process; networked databases get a pool.
        self._pool = ThreadPoolExecutor(
            max_workers=1 if self.dialect == "sqlite" else threads, thread_name_prefix="hamn-db"
        )
        self._write_queue: queue.SimpleQueue[_WriteOp | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_start = threading.Lock()
        database = engine.url.database if self.dialect == "sqlite" else None
        self._lock_fd: int | None = None
        if database and database != ":memory:":
            self._lock_fd = os.open(f"{database}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        self.inline_reads = self.dialect == "sqlite"
        self._w = _WriteStatements(self._insert)
        self._local = threading.local()
        self._raw_connections: list[Any] = []
        # Per-thread connections for hot reads, outside the pool so they never starve writers.
        self._read_engine = (
            create_metadata_engine(str(engine.url), pooled=False) if self.inline_reads else None
        )
        self._compiled: dict[int, tuple[str, tuple[str, ...], dict[str, Any]]] = {}

    def close(self) -> None:
        """Release connections and threads."""
        if self._writer is not None:
            self._write_queue.put(None)
            self._writer.join()
            self._writer = None
        self._pool.shutdown(wait=True)
        self.engine.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        for raw in self._raw_connections:
            raw.close()
        self._raw_connections.clear()

    def _fast(self, stmt: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a prebuilt hot-path SELECT.

        On SQLite, the statement's SQL (compiled once by SQLAlchemy) runs on a
        per-thread DB-API connection: the execution machinery of SQLAlchemy
        costs several times the query itself on a manifest GET.
        """
        if not self.inline_reads:
            with self.engine.connect() as conn:
                return [tuple(row) for row in conn.execute(stmt, params)]
        compiled = self._compiled.get(id(stmt))
        if compiled is None:
            c = stmt.compile(dialect=self.engine.dialect)
            # The defaults fill parameters the dialect adds itself (SQLite's OFFSET).
            compiled = (c.string, tuple(c.positiontup or ()), dict(c.params))
            self._compiled[id(stmt)] = compiled
        raw = getattr(self._local, "raw", None)
        if raw is None:
            assert self._read_engine is not None
            raw = self._local.raw = self._read_engine.raw_connection()
            self._raw_connections.append(raw)
        cursor = raw.cursor()
        try:
            sql, order, defaults = compiled
            cursor.execute(sql, tuple(params[k] if k in params else defaults[k] for k in order))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    async def fast_read(self, stmt: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a prebuilt hot-path SELECT (see :meth:`_fast`) for a sibling store:
        inline on SQLite's per-thread connection, one statement on the pool elsewhere."""
        return await self._read(functools.partial(self._fast, stmt, params))

    async def run_write(self, op: Callable[[Connection], R]) -> R:
        """Run ``op(conn)`` inside a write transaction (group-committed on SQLite).

        For sibling stores (identities, tasks...) that share this database: their
        writes join the same writer thread and cross-process lock.
        """
        return await self._submit_write(op)

    async def run_read(self, op: Callable[[Connection], R]) -> R:
        """Run ``op(conn)`` for a read: inline on SQLite, on the pool otherwise."""
        return await self._read(functools.partial(self._with_connection, op))

    def _with_connection(self, op: Callable[[Connection], R]) -> R:
        with self.engine.connect() as conn:
            return op(conn)

    async def _read(self, call: Callable[[], R]) -> R:
        """Run a read: inline on SQLite (a local WAL read never blocks and costs less
        than a thread hop), on the thread pool for a networked database."""
        try:
            if self.inline_reads:
                return call()
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except DBAPIError as exc:
            if _unavailable(exc, self.dialect):
                raise MetadataUnavailable(type(exc.orig).__name__) from exc
            raise

    async def _submit_write(self, op: Callable[[Connection], R]) -> R:
        try:
            return await self._submit_write_unchecked(op)
        except DBAPIError as exc:
            if _unavailable(exc, self.dialect):
                raise MetadataUnavailable(type(exc.orig).__name__) from exc
            raise

    async def _submit_write_unchecked(self, op: Callable[[Connection], R]) -> R:
        if self.dialect != "sqlite":
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._write_alone, op)
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        with self._writer_start:
            if self._writer is None:
                # Started on first use, so a store built before a fork has no thread to lose.
                self._writer = threading.Thread(
                    target=self._writer_loop, name="hamn-db-writer", daemon=True
                )
                self._writer.start()
        self._write_queue.put((op, future))
        return await asyncio.wrap_future(future)

    def _write_alone(self, op: Callable[[Connection], R]) -> R:
        with self._write() as conn:
            return op(conn)

    def _writer_loop(self) -> None:
        while True:
            first = self._write_queue.get()
            if first is None:
                return
            batch: list[_WriteOp] = [first]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._write_queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._commit_batch(batch)
            if stop:
                return

    def _commit_batch(self, batch: list[_WriteOp]) -> None:
        outcomes: list[tuple[concurrent.futures.Future[Any], bool, Any]] = []
        try:
            with self._write() as conn:
                for op, future in batch:
                    try:
                        if len(batch) == 1:
                            outcomes.append((future, True, op(conn)))
                        else:
                            with conn.begin_nested():
                                outcomes.append((future, True, op(conn)))
                    except Exception as exc:
                        if len(batch) == 1:
                            raise
                        outcomes.append((future, False, exc))
        except Exception as exc:
            # BEGIN or COMMIT failed (or the only write did): nothing of the batch is stored.
            for _, future in batch:
                future.set_exception(exc)
            return
        for future, ok, value in outcomes:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction.

        On SQLite, writers of all processes first queue on an ``flock``: the
        kernel hands it over the moment it is released, where SQLite's own busy
        handler would poll with sleeps of up to 100 ms and starve throughput.
        """
        with self._writer_lock(), self.engine.connect() as conn:
            conn = conn.execution_options(hamn_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        if self._lock_fd is None:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- registries -------------------------------------------------------------
    @_writing
    def ensure_registry(self, conn: Connection, name: str) -> Registry:
        """The registry ``name``, created if it does not exist."""
        conn.execute(
            self._insert(t.registries)
            .values(name=name, name_key=name.lower(), created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name_key"])
        )
        row = conn.execute(
            select(t.registries).where(t.registries.c.name_key == name.lower())
        ).one()
        return Registry(row.id, row.name, _aware(row.created_at), row.sku)

    @_reading
    def get_registry(self, name: str) -> Registry | None:
        """The registry named ``name`` (case-insensitive), or None."""
        rows = self._fast(_REGISTRY_BY_KEY, {"key": name.lower()})
        if not rows:
            return None
        return Registry(rows[0][0], rows[0][1], _timestamp(rows[0][2]), rows[0][3])

    # -- repositories -----------------------------------------------------------
    @staticmethod
    def _repo_id(
        conn: Connection, registry_id: int, repository: str, *, deleted: bool = False
    ) -> int | None:
        """The repository's id; a soft-deleted repository counts only with ``deleted``."""
        q = select(t.repositories.c.id).where(
            t.repositories.c.registry_id == registry_id, t.repositories.c.name == repository
        )
        if not deleted:
            q = q.where(t.repositories.c.deleted_at.is_(None))
        return conn.execute(q).scalar()

    @staticmethod
    def _repository_attributes(conn: Connection, repo_id: int) -> ChangeableAttributes:
        """The repository's attributes, its row locked until the write ends (PostgreSQL;
        SQLite's writes are serial already), so a concurrent PATCH waits or goes first."""
        row = conn.execute(
            select(*_attribute_cols(t.repositories))
            .where(t.repositories.c.id == repo_id)
            .with_for_update()
        ).one()
        return _attributes(row)

    @staticmethod
    def _tag_attributes(conn: Connection, repo_id: int, tag: str) -> ChangeableAttributes | None:
        """The tag's attributes, its row locked until the write ends; None if absent."""
        row = conn.execute(
            select(*_attribute_cols(t.tags))
            .where(t.tags.c.repository_id == repo_id, t.tags.c.name == tag)
            .with_for_update()
        ).first()
        return _attributes(row) if row is not None else None

    def _ensure_repo(self, conn: Connection, registry_id: int, repository: str) -> int:
        params = {"reg": registry_id, "repo": repository}
        repo_id: int | None = conn.execute(_REPO_ID, params).scalar()
        if repo_id is None:
            now = utcnow()
            conn.execute(
                self._w.insert_repository,
                {"p_reg": registry_id, "p_repo": repository, "p_now": now},
            )
            repo_id = conn.execute(_REPO_ID, params).scalar()
            assert repo_id is not None
        return repo_id

    @_reading
    def repository_exists(self, registry_id: int, repository: str) -> bool:
        """Whether the repository holds (or held) content."""
        return bool(self._fast(_REPO_ID, {"reg": registry_id, "repo": repository}))

    @_reading
    def list_repositories(self, registry_id: int, limit: int | None, last: str | None) -> list[str]:
        """Repository names in lexical order after ``last``, at most ``limit``."""
        params = {
            "reg": registry_id,
            "last": last or "",
            "limit": _NO_LIMIT if limit is None else limit,
        }
        return [row[0] for row in self._fast(_REPOSITORIES_PAGE, params)]

    # -- blobs ------------------------------------------------------------------
    @_reading
    def linked_blob_size(self, registry_id: int, repository: str, digest: str) -> int | None:
        """The blob's size if the repository may serve it, else None."""
        rows = self._fast(
            _LINKED_BLOB_SIZE, {"reg": registry_id, "repo": repository, "digest": digest}
        )
        return int(rows[0][0]) if rows else None

    @_reading
    def blob_size_in_registry(
        self, registry_id: int, digest: str, repository: str | None = None
    ) -> int | None:
        """The blob's size if any repository of the registry (or ``repository``) links it."""
        q = (
            select(t.blobs.c.size)
            .select_from(
                t.repository_blobs.join(
                    t.repositories, t.repositories.c.id == t.repository_blobs.c.repository_id
                ).join(t.blobs, t.blobs.c.digest == t.repository_blobs.c.digest)
            )
            .where(
                t.repositories.c.registry_id == registry_id, t.repository_blobs.c.digest == digest
            )
            .limit(1)
        )
        if repository is not None:
            q = q.where(t.repositories.c.name == repository)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()

    @_writing
    def link_blob(
        self, conn: Connection, registry_id: int, repository: str, digest: str, size: int
    ) -> None:
        """Record the blob (once per storage) and let the repository serve it (linking
        again restarts the link's garbage-collection grace period)."""
        now = utcnow()
        repo_id = self._ensure_repo(conn, registry_id, repository)
        conn.execute(
            self._insert(t.blobs)
            .values(digest=digest, size=size, created_at=now)
            .on_conflict_do_nothing(index_elements=["digest"])
        )
        conn.execute(self._w.insert_link, {"p_repo_id": repo_id, "p_digest": digest, "p_now": now})

    @_writing
    def unlink_blob(
        self,
        conn: Connection,
        registry_id: int,
        repository: str,
        digest: str,
        *,
        guard: Guard | None = None,
    ) -> bool:
        """Stop the repository serving the blob; False if it did not. ``guard`` sees
        the repository's attributes first and may refuse."""
        repo_id = self._repo_id(conn, registry_id, repository)
        if repo_id is None:
            return False
        if guard is not None:
            guard(AffectedContent(repository, self._repository_attributes(conn, repo_id)))
        result = conn.execute(
            delete(t.repository_blobs).where(
                t.repository_blobs.c.repository_id == repo_id,
                t.repository_blobs.c.digest == digest,
            )
        )
        return bool(result.rowcount)

    # -- usage (show-usage's Size, the quota) --------------------------------------
    def _change_usage(self, conn: Connection, registry_id: int, delta: int) -> tuple[int, int]:
        """Add ``delta`` bytes to the registry's usage; (before, after). The row is
        locked by the update until the transaction ends, so concurrent writers on
        PostgreSQL queue here and each sees the total of those before it."""
        u = t.registry_usage
        conn.execute(
            self._insert(u)
            .values(registry_id=registry_id, bytes=0)
            .on_conflict_do_nothing(index_elements=["registry_id"])
        )
        after = conn.execute(
            update(u)
            .where(u.c.registry_id == registry_id)
            .values(bytes=u.c.bytes + delta)
            .returning(u.c.bytes)
        ).scalar_one()
        return int(after) - delta, int(after)

    def _reference(
        self, conn: Connection, registry_id: int, digests: Iterable[str], quota: int | None
    ) -> None:
        """One more manifest references each of ``digests``; blobs new to the registry
        add their size to its usage. QuotaExceeded (the caller's transaction then
        stores nothing) when that passes ``quota``."""
        refs = t.registry_blob_refs
        added = 0
        wanted = sorted(set(digests))
        if not wanted:
            return
        rows = conn.execute(
            select(t.blobs.c.digest, t.blobs.c.size).where(t.blobs.c.digest.in_(wanted))
        ).all()
        sizes = {str(r[0]): int(r[1]) for r in rows}
        for digest in wanted:
            count = conn.execute(
                self._insert(refs)
                .values(registry_id=registry_id, digest=digest, refs=1)
                .on_conflict_do_update(
                    index_elements=["registry_id", "digest"], set_={"refs": refs.c.refs + 1}
                )
                .returning(refs.c.refs)
            ).scalar_one()
            if count == 1:
                added += int(sizes.get(digest, 0))
        if added:
            before, after = self._change_usage(conn, registry_id, added)
            if quota is not None and after > quota:
                raise QuotaExceeded(before, added, quota)

    def _release(self, conn: Connection, registry_id: int, manifest_ids: Any) -> None:
        """The manifests ``manifest_ids`` (a select of ids) stop referencing their blobs;
        blobs nothing else in the registry references leave its usage at once."""
        mb, refs = t.manifest_blobs, t.registry_blob_refs
        counts = conn.execute(
            select(mb.c.digest, func.count())
            .where(mb.c.manifest_id.in_(manifest_ids))
            .group_by(mb.c.digest)
            .order_by(mb.c.digest)
        ).all()
        freed: list[str] = []
        for digest, n in counts:
            left = conn.execute(
                update(refs)
                .where(refs.c.registry_id == registry_id, refs.c.digest == digest)
                .values(refs=refs.c.refs - n)
                .returning(refs.c.refs)
            ).scalar()
            if left is not None and left <= 0:
                freed.append(digest)
        if not freed:
            return
        conn.execute(
            delete(refs).where(refs.c.registry_id == registry_id, refs.c.digest.in_(freed))
        )
        size = conn.execute(
            select(func.coalesce(func.sum(t.blobs.c.size), 0)).where(t.blobs.c.digest.in_(freed))
        ).scalar_one()
        if size:
            self._change_usage(conn, registry_id, -int(size))

    @_reading
    def blob_over_quota(
        self, registry_id: int, digest: str, size: int, quota: int
    ) -> QuotaExceeded | None:
        """Why a new blob cannot fit the registry's quota, or None if it can (or the
        registry's manifests already reference it, so it adds nothing). Checked before
        a blob is published, so a push is refused at its first blob that cannot fit;
        the manifest's own check (in :meth:`put_manifest`) is the exact one."""
        # One prebuilt statement on the fast read path: every blob upload asks this.
        held, usage_value = self._fast(_BLOB_QUOTA_STATE, {"reg": registry_id, "digest": digest})[0]
        if held is not None:
            return None
        usage = int(usage_value or 0)
        return QuotaExceeded(usage, size, quota) if usage + size > quota else None

    # -- manifests --------------------------------------------------------------
    @staticmethod
    def _manifest(row: Any) -> ManifestRecord:
        return ManifestRecord(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            _timestamp(row[6]),
            bool(row[7]),
            bool(row[8]),
            bool(row[9]),
        )

    @_reading
    def get_manifest(
        self,
        registry_id: int,
        repository: str,
        *,
        digest: str | None = None,
        tag: str | None = None,
    ) -> ManifestRecord | None:
        """The manifest the tag points to, or with the digest, in the repository."""
        stmt = _MANIFEST_BY_TAG if tag is not None else _MANIFEST_BY_DIGEST
        params = {"reg": registry_id, "repo": repository, "ref": tag if tag is not None else digest}
        rows = self._fast(stmt, params)
        return self._manifest(rows[0]) if rows else None

    @_reading
    def manifest_content(self, manifest_id: int) -> bytes | None:
        """The stored bytes of a manifest."""
        rows = self._fast(_MANIFEST_CONTENT, {"id": manifest_id})
        return bytes(rows[0][0]) if rows else None

    @_writing
    def put_manifest(
        self,
        conn: Connection,
        registry_id: int,
        repository: str,
        *,
        digest: str,
        media_type: str,
        artifact_type: str | None,
        subject_digest: str | None,
        content: bytes,
        annotations: dict[str, str] | None,
        blobs: Iterable[str],
        children: Iterable[str],
        tag: str | None,
        guard: Guard | None = None,
        quota: int | None = None,
    ) -> None:
        """Store a manifest with its references, and point ``tag`` at it, in one transaction.

        Raises MissingReferences (and stores nothing) when a referenced blob is
        not linked to the repository or a child manifest is not in it. ``guard``
        first sees the repository and the existing tag with their attributes,
        and may refuse (by raising; nothing is stored). A new manifest's blobs
        join the registry's usage in the same transaction; QuotaExceeded (nothing
        stored) when that would pass ``quota`` bytes.
        """
        blob_set, child_set = set(blobs), set(children)
        now = utcnow()
        repo_id = self._ensure_repo(conn, registry_id, repository)
        if guard is not None:
            repo_attrs = self._repository_attributes(conn, repo_id)
            found: tuple[tuple[str, ChangeableAttributes], ...] = ()
            tag_attrs = None if tag is None else self._tag_attributes(conn, repo_id, tag)
            if tag is not None and tag_attrs is not None:
                found = ((tag, tag_attrs),)
            guard(AffectedContent(repository, repo_attrs, tags=found))
        missing_blobs = _missing(conn, t.repository_blobs, repo_id, blob_set, share=True)
        missing_children = _missing(conn, t.manifests, repo_id, child_set)
        if missing_blobs or missing_children:
            raise MissingReferences(missing_blobs, missing_children)
        inserted = conn.execute(
            self._insert(t.manifests)
            .values(
                repository_id=repo_id,
                digest=digest,
                media_type=media_type,
                artifact_type=artifact_type,
                subject_digest=subject_digest,
                size=len(content),
                content=content,
                annotations=orjson.dumps(annotations).decode() if annotations else None,
                created_at=now,
                untagged_at=now if tag is None else None,
            )
            .on_conflict_do_nothing(index_elements=["repository_id", "digest"])
            .returning(t.manifests.c.id)
        ).scalar()
        if inserted is not None:
            manifest_id = inserted
            self._reference(conn, registry_id, blob_set, quota)
        else:
            manifest_id, deleted_at = conn.execute(
                select(t.manifests.c.id, t.manifests.c.deleted_at).where(
                    t.manifests.c.repository_id == repo_id, t.manifests.c.digest == digest
                )
            ).one()
            if deleted_at is not None:
                # Pushed again while in the recycle bin: live again (its references and
                # usage never left); its deleted tags stay in the recycle bin.
                conn.execute(
                    update(t.manifests)
                    .where(t.manifests.c.id == manifest_id)
                    .values(deleted_at=None, untagged_at=now if tag is None else None)
                )
        if blob_set:
            conn.execute(
                self._insert(t.manifest_blobs).on_conflict_do_nothing(
                    index_elements=["manifest_id", "digest"]
                ),
                [{"manifest_id": manifest_id, "digest": d} for d in sorted(blob_set)],
            )
        if child_set:
            conn.execute(
                self._insert(t.manifest_children).on_conflict_do_nothing(
                    index_elements=["manifest_id", "child_digest"]
                ),
                [{"manifest_id": manifest_id, "child_digest": d} for d in sorted(child_set)],
            )
        if tag is not None:
            previous = conn.execute(
                select(t.tags.c.manifest_id).where(
                    t.tags.c.repository_id == repo_id, t.tags.c.name == tag
                )
            ).scalar()
            stmt = self._insert(t.tags).values(
                repository_id=repo_id,
                name=tag,
                manifest_id=manifest_id,
                created_at=now,
                updated_at=now,
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["repository_id", "name"],
                    set_={"manifest_id": manifest_id, "updated_at": now},
                )
            )
            if inserted is None:
                # Tagged (again): no longer untagged. Unconditional, so on PostgreSQL
                # the row lock orders this with an untagging of the same manifest.
                conn.execute(
                    update(t.manifests)
                    .where(t.manifests.c.id == manifest_id)
                    .values(untagged_at=None)
                )
            if previous is not None and previous != manifest_id:
                self._untagged_if_bare(conn, previous, now)
        conn.execute(
            update(t.repositories)
            .where(t.repositories.c.id == repo_id)
            .values(updated_at=now, deleted_at=None)  # a push brings a soft-deleted one back
        )

    @_writing
    def delete_manifest(
        self,
        conn: Connection,
        registry_id: int,
        repository: str,
        digest: str,
        *,
        guard: Guard | None = None,
        soft: bool = False,
    ) -> bool:
        """Delete the manifest and every tag pointing at it; False if absent.

        ``guard`` first sees the repository, the manifest and its tags with their
        attributes, and may refuse. With ``soft`` (the registry's soft-delete policy)
        the manifest goes to the recycle bin instead: it keeps its row (and so its
        references and its share of usage) with ``deleted_at`` set, and its tags move
        to ``deleted_tags``.
        """
        repo_id = self._repo_id(conn, registry_id, repository)
        if repo_id is None:
            return False
        repo_attrs = self._repository_attributes(conn, repo_id) if guard else None
        row = conn.execute(
            select(t.manifests.c.id, *_attribute_cols(t.manifests))
            .where(
                t.manifests.c.repository_id == repo_id,
                t.manifests.c.digest == digest,
                t.manifests.c.deleted_at.is_(None),
            )
            .with_for_update()
        ).first()
        if row is None:
            return False
        manifest_id = row[0]
        if guard is not None and repo_attrs is not None:
            tag_rows = conn.execute(
                select(t.tags.c.name, *_attribute_cols(t.tags))
                .where(t.tags.c.manifest_id == manifest_id)
                .order_by(t.tags.c.name)
                .with_for_update()
            ).all()
            guard(
                AffectedContent(
                    repository,
                    repo_attrs,
                    manifests=((digest, _attributes(row[1:])),),
                    tags=tuple((r[0], _attributes(r[1:])) for r in tag_rows),
                )
            )
        if soft:
            self._soft_delete(conn, repo_id, t.manifests.c.id == manifest_id, utcnow())
        else:
            self._remove_manifest(conn, registry_id, manifest_id)
        return True

    def _remove_manifest(self, conn: Connection, registry_id: int, manifest_id: int) -> None:
        """The hard delete: the manifest, its tags (live and deleted) and references go,
        and blobs no other manifest of the registry references leave its usage."""
        conn.execute(delete(t.tags).where(t.tags.c.manifest_id == manifest_id))
        conn.execute(delete(t.deleted_tags).where(t.deleted_tags.c.manifest_id == manifest_id))
        self._release(conn, registry_id, [manifest_id])
        conn.execute(delete(t.manifest_blobs).where(t.manifest_blobs.c.manifest_id == manifest_id))
        conn.execute(
            delete(t.manifest_children).where(t.manifest_children.c.manifest_id == manifest_id)
        )
        conn.execute(delete(t.manifests).where(t.manifests.c.id == manifest_id))

    def _soft_delete(
        self, conn: Connection, repo_id: int, which: ColumnElement[bool], now: datetime
    ) -> None:
        """Move the live manifests of the repository ``which`` selects to the recycle
        bin, their tags with them. Nothing is released: usage keeps counting them."""
        m = t.manifests
        ids = select(m.c.id).where(m.c.repository_id == repo_id, m.c.deleted_at.is_(None), which)
        tags = conn.execute(
            select(t.tags.c.name, t.tags.c.manifest_id)
            .where(t.tags.c.repository_id == repo_id, t.tags.c.manifest_id.in_(ids))
            .order_by(t.tags.c.name)
        ).all()
        self._bin_tags(conn, repo_id, [(name, mid) for name, mid in tags], now)
        conn.execute(
            delete(t.tags).where(t.tags.c.repository_id == repo_id, t.tags.c.manifest_id.in_(ids))
        )
        conn.execute(
            update(m)
            .where(m.c.repository_id == repo_id, m.c.deleted_at.is_(None), which)
            .values(deleted_at=now, untagged_at=now)
        )

    def _bin_tags(
        self, conn: Connection, repo_id: int, tags: Sequence[tuple[str, int]], now: datetime
    ) -> None:
        """Record tags (name, manifest id) as deleted at ``now``; a name deleted before
        is replaced (the recycle bin keeps each name's last deletion)."""
        if not tags:
            return
        stmt = self._insert(t.deleted_tags)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["repository_id", "name"],
                set_={
                    "manifest_id": stmt.excluded.manifest_id,
                    "deleted_at": stmt.excluded.deleted_at,
                },
            ),
            [
                {"repository_id": repo_id, "name": name, "manifest_id": mid, "deleted_at": now}
                for name, mid in tags
            ],
        )

    @_writing
    def delete_tag(
        self,
        conn: Connection,
        registry_id: int,
        repository: str,
        tag: str,
        *,
        guard: Guard | None = None,
        soft: bool = False,
    ) -> bool:
        """Remove a tag (the manifest stays); False if absent. ``guard`` first sees the
        repository and the tag with their attributes, and may refuse. With ``soft`` the
        tag goes to the recycle bin (``deleted_tags``)."""
        repo_id = self._repo_id(conn, registry_id, repository)
        if repo_id is None:
            return False
        if guard is not None:
            repo_attrs = self._repository_attributes(conn, repo_id)
            tag_attrs = self._tag_attributes(conn, repo_id, tag)
            if tag_attrs is None:
                return False
            guard(AffectedContent(repository, repo_attrs, tags=((tag, tag_attrs),)))
        removed = conn.execute(
            delete(t.tags)
            .where(t.tags.c.repository_id == repo_id, t.tags.c.name == tag)
            .returning(t.tags.c.manifest_id)
        ).scalar()
        if removed is None:
            return False
        now = utcnow()
        if soft:
            self._bin_tags(conn, repo_id, [(tag, removed)], now)
        self._untagged_if_bare(conn, removed, now)
        return True

    @staticmethod
    def _untagged_if_bare(conn: Connection, manifest_id: int, now: datetime) -> None:
        """Record that the manifest became untagged at ``now`` if no tag points at it
        (one of its tags was just removed or moved away, in this transaction).

        The manifest's row is locked first and the tags counted in a later statement:
        on PostgreSQL two transactions that each take one of its last two tags away
        then see each other's change (the second to lock sees the first's commit), so
        one of them records it; one that tags it meanwhile updates the same row.
        """
        m = t.manifests
        locked = conn.execute(
            select(m.c.id).where(m.c.id == manifest_id).with_for_update()
        ).scalar()
        if locked is None:
            return
        if (
            conn.execute(
                select(t.tags.c.name).where(t.tags.c.manifest_id == manifest_id).limit(1)
            ).first()
            is None
        ):
            conn.execute(update(m).where(m.c.id == manifest_id).values(untagged_at=now))

    @_reading
    def list_tags(
        self, registry_id: int, repository: str, limit: int | None, last: str | None
    ) -> list[str] | None:
        """Tags in lexical order after ``last``, at most ``limit``; None if no such repository."""
        repo = self._fast(_REPO_ID, {"reg": registry_id, "repo": repository})
        if not repo:
            return None
        params = {
            "repo_id": repo[0][0],
            "last": last or "",
            "limit": _NO_LIMIT if limit is None else limit,
        }
        return [row[0] for row in self._fast(_TAGS_PAGE, params)]

    @_reading
    def referrers(
        self, registry_id: int, repository: str, subject_digest: str
    ) -> list[Referrer] | None:
        """Manifests whose subject is ``subject_digest``; None if no such repository."""
        with self.engine.connect() as conn:
            repo_id = self._repo_id(conn, registry_id, repository)
            if repo_id is None:
                return None
            rows = conn.execute(
                select(
                    t.manifests.c.digest,
                    t.manifests.c.media_type,
                    t.manifests.c.size,
                    t.manifests.c.artifact_type,
                    t.manifests.c.annotations,
                )
                .where(
                    t.manifests.c.repository_id == repo_id,
                    t.manifests.c.subject_digest == subject_digest,
                    t.manifests.c.deleted_at.is_(None),
                )
                .order_by(t.manifests.c.created_at, t.manifests.c.digest)
            ).all()
        return [
            Referrer(
                r.digest,
                r.media_type,
                r.size,
                r.artifact_type,
                orjson.loads(r.annotations) if r.annotations else None,
            )
            for r in rows
        ]

    # -- uploads ----------------------------------------------------------------
    @_writing
    def create_upload(
        self, conn: Connection, upload_id: str, registry_id: int, repository: str
    ) -> Upload:
        """Record a new upload session at offset 0."""
        now = utcnow()
        params = {"p_id": upload_id, "p_reg": registry_id, "p_repo": repository, "p_now": now}
        conn.execute(self._w.insert_upload, params)
        return Upload(upload_id, registry_id, repository, 0, now, now)

    @_reading
    def get_upload(self, upload_id: str) -> Upload | None:
        """The upload session, or None."""
        rows = self._fast(_UPLOAD_BY_ID, {"id": upload_id})
        if not rows:
            return None
        row = rows[0]
        return Upload(row[0], row[1], row[2], row[3], _timestamp(row[4]), _timestamp(row[5]))

    @_writing
    def advance_upload(
        self, conn: Connection, upload_id: str, old_size: int, new_size: int
    ) -> None:
        """Move the acknowledged offset from ``old_size`` to ``new_size`` (compare-and-set)."""
        params = {"p_id": upload_id, "p_old": old_size, "p_new": new_size, "p_now": utcnow()}
        result = conn.execute(self._w.advance_upload, params)
        if not result.rowcount:
            raise UploadConflict(upload_id)

    @_writing
    def finish_upload(
        self,
        conn: Connection,
        upload_id: str,
        registry_id: int,
        repository: str,
        digest: str,
        size: int,
    ) -> None:
        """Link a just-published blob into the repository and end its upload, atomically."""
        now = utcnow()
        repo_id = self._ensure_repo(conn, registry_id, repository)
        conn.execute(self._w.insert_blob, {"p_digest": digest, "p_size": size, "p_now": now})
        conn.execute(self._w.insert_link, {"p_repo_id": repo_id, "p_digest": digest, "p_now": now})
        conn.execute(self._w.delete_upload, {"p_id": upload_id})

    @_writing
    def delete_upload(self, conn: Connection, upload_id: str) -> bool:
        """Forget an upload session; False if it was not there."""
        return bool(conn.execute(self._w.delete_upload, {"p_id": upload_id}).rowcount)

    @_reading
    def count(self, table: str) -> int:
        """Rows in a table (for tests and health checks)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(t.metadata.tables[table])
                ).scalar_one()
            )

    @_reading
    def registry_size(self, registry_id: int) -> int:
        """Bytes of the distinct blobs the registry's manifests reference, each blob counted
        once however many repositories or manifests use it (``show-usage``'s Size, the
        quota). Kept in the transactions that change references, so always exact."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(t.registry_usage.c.bytes).where(
                    t.registry_usage.c.registry_id == registry_id
                )
            ).scalar()
        return int(value or 0)

    # -- ACR metadata (/acr/v1/...): attributes, time-ordered pages, repository delete --
    @_reading
    def repository_info(self, registry_id: int, repository: str) -> RepositoryInfo | None:
        """The repository with its manifest and tag counts, or None (one query)."""
        r = t.repositories
        manifest_count = (
            select(func.count())
            .select_from(t.manifests)
            .where(t.manifests.c.repository_id == r.c.id, t.manifests.c.deleted_at.is_(None))
            .scalar_subquery()
        )
        tag_count = (
            select(func.count())
            .select_from(t.tags)
            .where(t.tags.c.repository_id == r.c.id)
            .scalar_subquery()
        )
        q = select(
            r.c.name,
            r.c.created_at,
            r.c.updated_at,
            manifest_count,
            tag_count,
            *_attribute_cols(r),
        ).where(r.c.registry_id == registry_id, r.c.name == repository, r.c.deleted_at.is_(None))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        return RepositoryInfo(
            row[0], _aware(row[1]), _aware(row[2]), int(row[3]), int(row[4]), _attributes(row[5:])
        )

    @staticmethod
    def _after(
        order: ListOrder,
        time_col: ColumnElement[Any],
        key_col: ColumnElement[Any],
        last: str | None,
        last_time: datetime | None,
    ) -> ColumnElement[bool] | None:
        """The keyset condition "after (last_time, last)" in ``order``.

        Time orders tie-break on the key (tag name, digest), so pages are stable
        when many entries share a timestamp.
        """
        if last is None:
            return None
        if order == "name":
            return key_col > last
        if last_time is None:
            raise ValueError("a time-ordered page after an entry needs the entry's time")
        if order == "timeasc":
            return or_(time_col > last_time, and_(time_col == last_time, key_col > last))
        return or_(time_col < last_time, and_(time_col == last_time, key_col < last))

    @staticmethod
    def _ordering(
        order: ListOrder, time_col: ColumnElement[Any], key_col: ColumnElement[Any]
    ) -> tuple[ColumnElement[Any], ...]:
        if order == "name":
            return (key_col,)
        if order == "timeasc":
            return (time_col, key_col)
        return (time_col.desc(), key_col.desc())

    _TAG_INFO_COLS = (
        t.tags.c.name,
        t.manifests.c.digest,
        t.tags.c.created_at,
        t.tags.c.updated_at,
        *_attribute_cols(t.tags),
    )

    @staticmethod
    def _tag_info(row: Any) -> TagInfo:
        return TagInfo(row[0], row[1], _aware(row[2]), _aware(row[3]), _attributes(row[4:]))

    @_reading
    def get_tag(self, registry_id: int, repository: str, tag: str) -> TagInfo | None:
        """The tag with its digest and times, or None (no such tag or repository)."""
        q = (
            select(*self._TAG_INFO_COLS)
            .select_from(
                t.repositories.join(t.tags, t.tags.c.repository_id == t.repositories.c.id).join(
                    t.manifests, t.manifests.c.id == t.tags.c.manifest_id
                )
            )
            .where(
                t.repositories.c.registry_id == registry_id,
                t.repositories.c.name == repository,
                t.tags.c.name == tag,
            )
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return self._tag_info(row) if row else None

    @_reading
    def tag_page(
        self,
        registry_id: int,
        repository: str,
        *,
        limit: int,
        order: ListOrder,
        last: str | None = None,
        last_time: datetime | None = None,
        digest: str | None = None,
    ) -> list[TagInfo] | None:
        """Up to ``limit`` listable tags (listEnabled) after ``last`` in ``order`` (time =
        last update); only those pointing at ``digest`` when given. None if there is no
        such repository.

        One query; a second only when the page is empty, to tell an empty page
        from a missing repository.
        """
        q = (
            select(*self._TAG_INFO_COLS)
            .select_from(
                t.repositories.join(t.tags, t.tags.c.repository_id == t.repositories.c.id).join(
                    t.manifests, t.manifests.c.id == t.tags.c.manifest_id
                )
            )
            .where(
                t.repositories.c.registry_id == registry_id,
                t.repositories.c.name == repository,
                t.tags.c.list_enabled,
            )
            .order_by(*self._ordering(order, t.tags.c.updated_at, t.tags.c.name))
            .limit(limit)
        )
        after = self._after(order, t.tags.c.updated_at, t.tags.c.name, last, last_time)
        if after is not None:
            q = q.where(after)
        if digest is not None:
            q = q.where(t.manifests.c.digest == digest)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
            if not rows and self._repo_id(conn, registry_id, repository) is None:
                return None
        return [self._tag_info(r) for r in rows]

    @staticmethod
    def _tags_of(conn: Connection, manifest_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """Each manifest's tags in lexical order, for a page of manifests in one query."""
        out: dict[int, list[str]] = {}
        if manifest_ids:
            rows = conn.execute(
                select(t.tags.c.manifest_id, t.tags.c.name)
                .where(t.tags.c.manifest_id.in_(manifest_ids))
                .order_by(t.tags.c.name)
            )
            for manifest_id, name in rows:
                out.setdefault(manifest_id, []).append(name)
        return {k: tuple(v) for k, v in out.items()}

    _MANIFEST_INFO_COLS = (
        t.manifests.c.id,
        t.manifests.c.digest,
        t.manifests.c.media_type,
        t.manifests.c.content,
        t.manifests.c.created_at,
        *_attribute_cols(t.manifests),
    )

    @staticmethod
    def _manifest_info(row: Any, tags: dict[int, tuple[str, ...]]) -> ManifestInfo:
        return ManifestInfo(
            row[1],
            row[2],
            bytes(row[3]),
            _aware(row[4]),
            tags.get(row[0], ()),
            _attributes(row[5:]),
        )

    @_reading
    def get_manifest_info(
        self, registry_id: int, repository: str, digest: str
    ) -> ManifestInfo | None:
        """The manifest with its bytes and tags, or None (no such manifest or repository)."""
        q = (
            select(*self._MANIFEST_INFO_COLS)
            .select_from(
                t.repositories.join(t.manifests, t.manifests.c.repository_id == t.repositories.c.id)
            )
            .where(
                t.repositories.c.registry_id == registry_id,
                t.repositories.c.name == repository,
                t.manifests.c.digest == digest,
                t.manifests.c.deleted_at.is_(None),
            )
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
            if row is None:
                return None
            tags = self._tags_of(conn, [row[0]])
        return self._manifest_info(row, tags)

    @_reading
    def manifest_page(
        self,
        registry_id: int,
        repository: str,
        *,
        limit: int,
        order: ListOrder,
        last: str | None = None,
        last_time: datetime | None = None,
    ) -> list[ManifestInfo] | None:
        """Up to ``limit`` listable manifests (listEnabled) after the digest ``last`` in
        ``order`` (time = creation), each with all its tags; None if there is no such
        repository.

        Two queries, however long the page: the manifests, then all their tags.
        """
        q = (
            select(*self._MANIFEST_INFO_COLS)
            .select_from(
                t.repositories.join(t.manifests, t.manifests.c.repository_id == t.repositories.c.id)
            )
            .where(
                t.repositories.c.registry_id == registry_id,
                t.repositories.c.name == repository,
                t.manifests.c.list_enabled,
                t.manifests.c.deleted_at.is_(None),
            )
            .order_by(*self._ordering(order, t.manifests.c.created_at, t.manifests.c.digest))
            .limit(limit)
        )
        after = self._after(order, t.manifests.c.created_at, t.manifests.c.digest, last, last_time)
        if after is not None:
            q = q.where(after)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
            if not rows and self._repo_id(conn, registry_id, repository) is None:
                return None
            tags = self._tags_of(conn, [r[0] for r in rows])
        return [self._manifest_info(r, tags) for r in rows]

    @_writing
    def set_attributes(
        self,
        conn: Connection,
        registry_id: int,
        repository: str,
        changes: AttributeChanges,
        *,
        tag: str | None = None,
        digest: str | None = None,
    ) -> ChangeableAttributes | None:
        """Change the attributes of the repository, or of its ``tag``, or of its
        manifest ``digest``; return them as they now are. None if there is no such thing.
        """
        repo_id = self._repo_id(conn, registry_id, repository)
        if repo_id is None:
            return None
        table: Any
        if tag is not None:
            table, where = t.tags, and_(t.tags.c.repository_id == repo_id, t.tags.c.name == tag)
        elif digest is not None:
            table = t.manifests
            where = and_(
                t.manifests.c.repository_id == repo_id,
                t.manifests.c.digest == digest,
                t.manifests.c.deleted_at.is_(None),
            )
        else:
            table, where = t.repositories, t.repositories.c.id == repo_id
        values = {
            name: value for name in ATTRIBUTE_NAMES if (value := getattr(changes, name)) is not None
        }
        if values:
            conn.execute(update(table).where(where).values(values))
        row = conn.execute(select(*_attribute_cols(table)).where(where)).first()
        return _attributes(row) if row is not None else None

    @_writing
    def delete_repository(
        self,
        conn: Connection,
        registry_id: int,
        repository: str,
        *,
        guard: Guard | None = None,
        soft: bool = False,
    ) -> DeletedRepository | None:
        """Delete the repository with every manifest, tag and blob link, in one transaction.

        The repository itself goes too, so it leaves the catalog. Blob bytes stay
        for garbage collection (as after a manifest delete). None if absent.
        ``guard`` first sees the repository and all its manifests and tags with
        their attributes, and may refuse. With ``soft`` every manifest and tag goes to
        the recycle bin and the repository is marked deleted (it leaves the catalog;
        its row, blob links and usage stay until the collector purges them).
        """
        repo_id = self._repo_id(conn, registry_id, repository)
        if repo_id is None:
            return None
        repo_attrs = self._repository_attributes(conn, repo_id)
        manifest_rows = conn.execute(
            select(t.manifests.c.digest, *_attribute_cols(t.manifests)).where(
                t.manifests.c.repository_id == repo_id, t.manifests.c.deleted_at.is_(None)
            )
        ).all()
        tag_rows = conn.execute(
            select(t.tags.c.name, *_attribute_cols(t.tags)).where(t.tags.c.repository_id == repo_id)
        ).all()
        if guard is not None:
            guard(
                AffectedContent(
                    repository,
                    repo_attrs,
                    manifests=tuple((r[0], _attributes(r[1:])) for r in manifest_rows),
                    tags=tuple((r[0], _attributes(r[1:])) for r in tag_rows),
                )
            )
        digests = sorted(r[0] for r in manifest_rows)
        tag_names = sorted(r[0] for r in tag_rows)
        if soft:
            now = utcnow()
            self._soft_delete(conn, repo_id, true(), now)
            conn.execute(
                update(t.repositories).where(t.repositories.c.id == repo_id).values(deleted_at=now)
            )
            return DeletedRepository(digests, tag_names)
        self._remove_repository(conn, registry_id, repo_id)
        return DeletedRepository(digests, tag_names)

    def _remove_repository(self, conn: Connection, registry_id: int, repo_id: int) -> None:
        """The hard delete of a repository: everything in it, recycle bin included."""
        manifest_ids = select(t.manifests.c.id).where(t.manifests.c.repository_id == repo_id)
        conn.execute(delete(t.tags).where(t.tags.c.repository_id == repo_id))
        conn.execute(delete(t.deleted_tags).where(t.deleted_tags.c.repository_id == repo_id))
        self._release(conn, registry_id, manifest_ids)
        conn.execute(
            delete(t.manifest_blobs).where(t.manifest_blobs.c.manifest_id.in_(manifest_ids))
        )
        conn.execute(
            delete(t.manifest_children).where(t.manifest_children.c.manifest_id.in_(manifest_ids))
        )
        conn.execute(delete(t.manifests).where(t.manifests.c.repository_id == repo_id))
        conn.execute(
            delete(t.repository_blobs).where(t.repository_blobs.c.repository_id == repo_id)
        )
        conn.execute(delete(t.repositories).where(t.repositories.c.id == repo_id))

    # -- soft delete: the registry's policies, the recycle bin, restore, purge ----------
    @_reading
    def registry_policies(self, registry_id: int) -> dict[str, Any]:
        """The registry's stored ``policies`` object (empty when none or unreadable)."""
        q = select(t.registries.c.policies).where(t.registries.c.id == registry_id)
        with self.engine.connect() as conn:
            text = conn.execute(q).scalar()
        if not text:
            return {}
        try:
            policies = orjson.loads(text)
        except orjson.JSONDecodeError:
            return {}
        return policies if isinstance(policies, dict) else {}

    @_reading
    def deleted_repositories(self, registry_id: int, limit: int, last: str | None) -> list[str]:
        """Names of repositories with soft-deleted manifests or tags, after ``last``."""
        r = t.repositories
        in_bin = or_(
            exists(
                select(literal(1)).where(
                    t.manifests.c.repository_id == r.c.id, t.manifests.c.deleted_at.is_not(None)
                )
            ),
            exists(select(literal(1)).where(t.deleted_tags.c.repository_id == r.c.id)),
        )
        q = (
            select(r.c.name)
            .where(r.c.registry_id == registry_id, r.c.name > (last or ""), in_bin)
            .order_by(r.c.name)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    @_reading
    def deleted_manifest_page(
        self, registry_id: int, repository: str, *, limit: int, last: str | None = None
    ) -> list[DeletedManifest] | None:
        """Up to ``limit`` soft-deleted manifests after the digest ``last`` (digest order),
        each with the tags it had in the recycle bin; None if there is no such repository."""
        m = t.manifests
        with self.engine.connect() as conn:
            repo_id = self._repo_id(conn, registry_id, repository, deleted=True)
            if repo_id is None:
                return None
            q = (
                select(*self._MANIFEST_INFO_COLS, m.c.deleted_at)
                .where(
                    m.c.repository_id == repo_id,
                    m.c.deleted_at.is_not(None),
                    m.c.digest > (last or ""),
                )
                .order_by(m.c.digest)
                .limit(limit)
            )
            rows = conn.execute(q).all()
            tags: dict[int, list[str]] = {}
            ids = [r[0] for r in rows]
            if ids:
                for mid, name in conn.execute(
                    select(t.deleted_tags.c.manifest_id, t.deleted_tags.c.name)
                    .where(t.deleted_tags.c.manifest_id.in_(ids))
                    .order_by(t.deleted_tags.c.name)
                ):
                    tags.setdefault(mid, []).append(name)
        by_id = {k: tuple(v) for k, v in tags.items()}
        return [DeletedManifest(self._manifest_info(r, by_id), _aware(r[-1])) for r in rows]

    @_reading
    def deleted_tag_page(
        self, registry_id: int, repository: str, *, limit: int, last: str | None = None
    ) -> list[DeletedTag] | None:
        """Up to ``limit`` soft-deleted tags after the name ``last`` (name order), with the
        digest each pointed at; None if there is no such repository."""
        d = t.deleted_tags
        with self.engine.connect() as conn:
            repo_id = self._repo_id(conn, registry_id, repository, deleted=True)
            if repo_id is None:
                return None
            rows = conn.execute(
                select(d.c.name, t.manifests.c.digest, d.c.deleted_at)
                .select_from(d.join(t.manifests, t.manifests.c.id == d.c.manifest_id))
                .where(d.c.repository_id == repo_id, d.c.name > (last or ""))
                .order_by(d.c.name)
                .limit(limit)
            ).all()
        return [DeletedTag(name, digest, _aware(at)) for name, digest, at in rows]

    @_writing
    def restore_manifest(
        self,
        conn: Connection,
        registry_id: int,
        repository: str,
        digest: str,
        *,
        tag: str | None = None,
    ) -> RestoreOutcome:
        """Take the manifest out of the recycle bin with its deleted tags that no other
        manifest took meanwhile (or only ``tag``); a live manifest gets back the
        deleted ``tag`` it had. See :data:`RestoreOutcome` for what comes back."""
        repo_id = self._repo_id(conn, registry_id, repository, deleted=True)
        if repo_id is None:
            return "unknown"
        m, d = t.manifests, t.deleted_tags
        row = conn.execute(
            select(m.c.id, m.c.deleted_at)
            .where(m.c.repository_id == repo_id, m.c.digest == digest)
            .with_for_update()
        ).first()
        if row is None:
            return "unknown"
        manifest_id, deleted_at = row
        binned = select(d.c.name).where(d.c.manifest_id == manifest_id).order_by(d.c.name)
        if tag is not None:
            binned = binned.where(d.c.name == tag)
        names = list(conn.execute(binned).scalars())
        if deleted_at is None and (tag is None or not names):
            # Live: nothing of it to restore but a named deleted tag. Deleted tags of it
            # left in the recycle bin mean it was deleted once and is live again (pushed
            # or restored meanwhile).
            history = conn.execute(
                select(d.c.name).where(d.c.manifest_id == manifest_id).limit(1)
            ).first()
            if history is None:
                return "unknown"
            return "live" if tag is None else "tag_unknown"
        if tag is not None and not names:
            return "tag_unknown"
        live = dict(
            conn.execute(
                select(t.tags.c.name, t.tags.c.manifest_id).where(
                    t.tags.c.repository_id == repo_id, t.tags.c.name.in_(names)
                )
            ).all()
        )
        if tag is not None and live.get(tag, manifest_id) != manifest_id:
            return "tag_taken"
        now = utcnow()
        back = [n for n in names if n not in live]
        if back:
            conn.execute(
                t.tags.insert(),
                [
                    {
                        "repository_id": repo_id,
                        "name": n,
                        "manifest_id": manifest_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n in back
                ],
            )
        gone = [n for n in names if live.get(n, manifest_id) == manifest_id]
        if gone:
            conn.execute(delete(d).where(d.c.repository_id == repo_id, d.c.name.in_(gone)))
        tagged = bool(back) or manifest_id in live.values()
        values: dict[str, Any] = {"deleted_at": None}
        if deleted_at is not None or tagged:
            values["untagged_at"] = None if tagged else now
        conn.execute(update(m).where(m.c.id == manifest_id).values(values))
        conn.execute(
            update(t.repositories).where(t.repositories.c.id == repo_id).values(deleted_at=None)
        )
        return "restored"

    @_writing
    def purge_deleted(
        self, conn: Connection, registry_id: int, deleted_before: datetime, limit: int
    ) -> list[PurgedManifest]:
        """Remove for good, through the hard delete (usage drops), up to ``limit``
        manifests of the registry soft-deleted before ``deleted_before``; the tags
        deleted before it; and, once nothing is left in them, repositories deleted
        before it. The manifests removed (an empty list: nothing more to purge)."""
        m, r = t.manifests, t.repositories
        rows = conn.execute(
            select(m.c.id, r.c.name, m.c.digest, m.c.size)
            .select_from(m.join(r, r.c.id == m.c.repository_id))
            .where(
                r.c.registry_id == registry_id,
                m.c.deleted_at.is_not(None),
                m.c.deleted_at < deleted_before,
            )
            .order_by(m.c.id)
            .limit(limit)
            .with_for_update(of=m)
        ).all()
        for manifest_id, _, _, _ in rows:
            self._remove_manifest(conn, registry_id, manifest_id)
        repos = select(r.c.id).where(r.c.registry_id == registry_id)
        conn.execute(
            delete(t.deleted_tags).where(
                t.deleted_tags.c.repository_id.in_(repos),
                t.deleted_tags.c.deleted_at < deleted_before,
            )
        )
        if len(rows) < limit:
            empty = conn.execute(
                select(r.c.id).where(
                    r.c.registry_id == registry_id,
                    r.c.deleted_at.is_not(None),
                    r.c.deleted_at < deleted_before,
                    ~exists(select(literal(1)).where(m.c.repository_id == r.c.id)),
                )
            ).scalars()
            for repo_id in list(empty):
                self._remove_repository(conn, registry_id, repo_id)
        return [PurgedManifest(name, digest, int(size)) for _, name, digest, size in rows]


__all__ = [
    "IntegrityError",
    "MetadataStore",
    "MetadataUnavailable",
    "MissingReferences",
    "QuotaExceeded",
    "UploadConflict",
    "create_metadata_engine",
    "migrate",
]
