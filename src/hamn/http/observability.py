"""What the server tells its operators: request ids, the access log and Prometheus metrics.

:class:`RequestObservability` wraps the whole application (outside Starlette's
own error layer, so even a response to a crash carries its ``X-Request-Id``
and is logged and counted with its real status). Routes add what only they
know, the kind of route and the repository, through :func:`describe_request`.

Metrics use ``prometheus_client`` in multiprocess mode: every granian worker
writes its values to files in one shared directory (``PROMETHEUS_MULTIPROC_DIR``)
and ``/metrics``, answered by whichever worker, adds them up. The library picks
that mode when it is imported, so it is imported only once the directory is set
(:func:`ensure_metrics_directory`), never at module level.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hamn.http.errors import to_hamn_error
from hamn.logs import FIELDS, redact_headers, redact_query, request_id
from hamn.storage.base import StorageError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

#: The variable prometheus_client reads (at import) to share metrics between processes.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Route kinds: the ``route`` label and log field. Bounded, unlike paths.
ROUTE_KINDS = (
    "manifest",
    "blob",
    "signed_blob",
    "upload",
    "tags",
    "catalog",
    "referrers",
    "acr_metadata",
    "acr_deleted",
    "base",
    "other",
)
_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
#: Seconds; pulls of a manifest take milliseconds, pushes of a big layer minutes.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
METRICS_PATH = "/metrics"

access_log = logging.getLogger("hamn.access")


# --------------------------------------------------------------- request facts


@dataclass(slots=True)
class RequestFacts:
    """What the routes learned about the request being handled (for its log line)."""

    route: str = "other"
    registry: str | None = None
    repository: str | None = None
    identity: str | None = None


_facts: ContextVar[RequestFacts | None] = ContextVar("hamn_request_facts", default=None)


def describe_request(
    *,
    route: str | None = None,
    registry: str | None = None,
    repository: str | None = None,
    identity: str | None = None,
) -> None:
    """Record the route kind and target of the current request (ignored outside one)."""
    facts = _facts.get()
    if facts is None:
        return
    if route is not None:
        facts.route = route
    if registry is not None:
        facts.registry = registry
    if repository is not None:
        facts.repository = repository
    if identity is not None:
        facts.identity = identity


def of_kind(
    route: str, endpoint: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """``endpoint``, recording that its requests are of route kind ``route``."""

    async def endpoint_of_kind(request: Request) -> Response:
        describe_request(route=route)
        return await endpoint(request)

    return endpoint_of_kind


def new_request_id(offered: str | None) -> str:
    """The client's ``X-Request-Id`` if sane (≤ 64 of ``[A-Za-z0-9._-]``), else a new one."""
    if offered is not None and _SANE_REQUEST_ID.match(offered):
        return offered
    # Unpredictability is not needed, speed is; ``random`` is reseeded in forked workers.
    return f"{random.getrandbits(64):016x}"


def error_kind(exc: BaseException) -> str:
    """What failed, for the server error counter: ``storage``, ``database`` or ``internal``."""
    if isinstance(exc, StorageError):
        return "storage"
    if isinstance(exc, SQLAlchemyError):
        return "database"
    return "internal"


# --------------------------------------------------------------------- metrics


def ensure_metrics_directory(data_dir: Path) -> str:
    """The directory shared by this server's workers for metrics; set in the environment.

    ``hamn serve`` should set it for its workers. When it did not, every worker of
    one server derives the same one from its parent process (the server), under
    the data directory, and removes those of servers that are gone.
    """
    existing = os.environ.get(METRICS_DIR_ENV)
    if existing:
        return existing
    base = data_dir.absolute() / "run" / "metrics"
    path = base / str(os.getppid())
    path.mkdir(parents=True, exist_ok=True)
    for sibling in base.iterdir():
        if sibling != path and sibling.name.isdigit() and not _process_exists(int(sibling.name)):
            shutil.rmtree(sibling, ignore_errors=True)
    os.environ[METRICS_DIR_ENV] = str(path)
    return str(path)


def fresh_metrics_directory(path: Path) -> str:
    """Empty ``path`` (created if missing) for a new server's metrics; for ``hamn serve``."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HttpMetrics:
    """The server's Prometheus metrics, shared across worker processes.

    Labels are bounded: route kind, method, status and error kind; never a
    repository name or a digest.
    """

    def __init__(self) -> None:
        if not os.environ.get(METRICS_DIR_ENV):
            raise RuntimeError(f"{METRICS_DIR_ENV} must be set before metrics are created")
        # Imported here, after the directory is set: see the module docstring.
        import prometheus_client
        from prometheus_client import multiprocess, values

        if not getattr(values.ValueClass, "_multiprocess", False):
            raise RuntimeError(
                f"prometheus_client was imported before {METRICS_DIR_ENV} was set; "
                "metrics would not be shared between workers"
            )
        self._exposition = prometheus_client.generate_latest
        self.content_type = prometheus_client.CONTENT_TYPE_LATEST
        self._registry: CollectorRegistry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(self._registry)  # type: ignore[no-untyped-call]
        # Not registered anywhere: in multiprocess mode values live in the files,
        # which the collector above reads.
        self._requests = prometheus_client.Counter(
            "hamn_http_requests",
            "HTTP requests answered, by route kind, method and status.",
            ["route", "method", "status"],
            registry=None,
        )
        self._latency = prometheus_client.Histogram(
            "hamn_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route kind and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=None,
        )
        self._received = prometheus_client.Counter(
            "hamn_http_received_bytes",
            "Request body bytes received, by route kind.",
            ["route"],
            registry=None,
        )
        self._sent = prometheus_client.Counter(
            "hamn_http_sent_bytes",
            "Response body bytes sent, by route kind.",
            ["route"],
            registry=None,
        )
        self._upload_bytes = prometheus_client.Counter(
            "hamn_upload_bytes",
            "Bytes received by blob upload requests (POST, PATCH and PUT of blobs/uploads).",
            registry=None,
        )
        self._server_errors = prometheus_client.Counter(
            "hamn_server_errors",
            "Failures answered UNAVAILABLE or UNKNOWN, by what failed "
            "(storage, database, internal).",
            ["kind"],
            registry=None,
        )
        # ``labels()`` costs more than the increment; the label sets are few.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._route_children: dict[str, tuple[Counter, Counter]] = {}

    def observe(
        self, route: str, method: str, status: int, seconds: float, received: int, sent: int
    ) -> None:
        """Count one answered request."""
        if method not in _METHODS:
            method = "other"
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self._requests.labels(route, method, str(status)),
                self._latency.labels(route, method),
            )
            self._request_children[key] = children
        counter, latency = children
        counter.inc()
        latency.observe(seconds)
        if received or sent:
            by_route = self._route_children.get(route)
            if by_route is None:
                by_route = (self._received.labels(route), self._sent.labels(route))
                self._route_children[route] = by_route
            if received:
                by_route[0].inc(received)
                if route == "upload":
                    self._upload_bytes.inc(received)
            if sent:
                by_route[1].inc(sent)

    def server_error(self, exc: BaseException) -> None:
        """Count a failure that the error renderer answers with a 5xx."""
        self._server_errors.labels(error_kind(exc)).inc()

    def exposition(self) -> bytes:
        """Every worker's metrics, summed, in the Prometheus text format."""
        return self._exposition(self._registry)


def metrics_endpoint(
    metrics: HttpMetrics,
    authorize: Callable[[Request], Awaitable[object]],
    *,
    also: Sequence[Callable[[], Awaitable[bytes]]] = (),
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics`` for callers ``authorize`` lets through (it raises otherwise),
    followed by the metric families each of ``also`` renders at scrape time.

    The exposition reads files, so it runs in a thread, off the event loop.
    """

    async def serve_metrics(request: Request) -> Response:
        await authorize(request)
        body = await asyncio.to_thread(metrics.exposition)
        for render in also:
            body += await render()
        return Response(body, media_type=metrics.content_type)

    return serve_metrics


def job_gauges(
    counts: Callable[[], Awaitable[dict[tuple[str, str], int]]],
) -> Callable[[], Awaitable[bytes]]:
    """``hamn_jobs{kind,state}``: the deployment's background jobs by kind and state,
    counted in the database at scrape time (so every server reports the whole
    deployment's queue). Left out when the database cannot answer: the request
    metrics still come."""

    async def render() -> bytes:
        try:
            found = await counts()
        except Exception:
            logging.getLogger("hamn.jobs").debug("no job counts for /metrics", exc_info=True)
            return b""
        lines = [
            "# HELP hamn_jobs Background jobs in the database, by kind and state.",
            "# TYPE hamn_jobs gauge",
        ]
        for (kind, state), n in sorted(found.items()):
            lines.append(f'hamn_jobs{{kind="{_label(kind)}",state="{_label(state)}"}} {n}')
        return ("\n".join(lines) + "\n").encode()

    return render


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def counting_server_errors(
    metrics: HttpMetrics | None,
    handler: Callable[[Request, Exception], Awaitable[Response]],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The exception handler ``handler``, counting the failures it answers with a 5xx."""
    if metrics is None:
        return handler

    async def handle_and_count(request: Request, exc: Exception) -> Response:
        if to_hamn_error(exc).status >= 500:
            metrics.server_error(exc)
        return await handler(request, exc)

    return handle_and_count


# ------------------------------------------------------------------ middleware


#: Every response says which API it speaks (OCI distribution spec, Docker clients).
API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")


class RequestObservability:
    """Gives every request an id, logs it on its way out and counts it.

    It also adds ``Docker-Distribution-API-Version`` to every response: one
    middleware layer on the hot path instead of two.

    ``access_log_enabled`` writes one ``hamn.access`` line per request at INFO
    (with the request's headers, redacted, at DEBUG). ``metrics`` may be None
    (in-process tests).
    """

    def __init__(
        self, app: ASGIApp, *, metrics: HttpMetrics | None, access_log_enabled: bool = True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = user_agent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                offered = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        rid = new_request_id(offered)
        rid_token = request_id.set(rid)
        facts = RequestFacts()
        facts_token = _facts.set(facts)
        rid_header = (b"x-request-id", rid.encode())
        status = 0
        received = sent = 0
        response_headers: list[tuple[bytes, bytes]] = []

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def send_observed(message: Message) -> None:
            nonlocal status, sent, response_headers
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                response_headers = [*message.get("headers", ()), rid_header, API_VERSION_HEADER]
                message["headers"] = response_headers
            elif kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.pathsend":
                sent += _content_length(response_headers)
            await send(message)

        outcome = "ok"
        try:
            await self.app(scope, receive_counted, send_observed)
        except BaseException as exc:
            # The error layer inside answered (and re-raised for the server to log);
            # if nothing was sent, the client got no answer at all.
            outcome = type(exc).__name__
            raise
        finally:
            if status == 0:
                status = 499 if outcome == "CancelledError" else 500
            seconds = time.perf_counter() - started
            try:
                if self.metrics is not None and scope["path"] != METRICS_PATH:
                    self.metrics.observe(
                        facts.route, scope["method"], status, seconds, received, sent
                    )
                if self.access_log_enabled and access_log.isEnabledFor(logging.INFO):
                    self._log(scope, facts, status, seconds, received, sent, user_agent)
            finally:
                _facts.reset(facts_token)
                request_id.reset(rid_token)

    def _log(
        self,
        scope: Scope,
        facts: RequestFacts,
        status: int,
        seconds: float,
        received: int,
        sent: int,
        user_agent: str | None,
    ) -> None:
        method = scope["method"]
        path = scope["path"]
        query = scope.get("query_string", b"")
        if query:
            path = f"{path}?{redact_query(query.decode('latin-1'))}"
        client = scope.get("client")
        fields: dict[str, object] = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "bytes_in": received,
            "bytes_out": sent,
            "route": facts.route,
            "registry": facts.registry,
            "repository": facts.repository,
            "identity": facts.identity,
            "client": client[0] if client else None,
            "user_agent": user_agent,
        }
        if access_log.isEnabledFor(logging.DEBUG):
            fields["request_headers"] = redact_headers(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
            )
        access_log.info("%s %s %d", method, path, status, extra={FIELDS: fields})


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0
