"""The composition root: ``create_app(settings)`` builds the object graph once.

Only this module opens stores and drivers; routes receive services. Tests build
their own app with their own settings.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from hamn.config import Settings
from hamn.errors import HamnError
from hamn.http.acr import AcrMetadataApi
from hamn.http.acr_deleted import AcrDeletedApi
from hamn.http.auth import RequestAuth
from hamn.http.errors import handle_exception
from hamn.http.management import management_routes
from hamn.http.observability import (
    METRICS_PATH,
    HttpMetrics,
    RequestObservability,
    counting_server_errors,
    ensure_metrics_directory,
    job_gauges,
    metrics_endpoint,
    of_kind,
)
from hamn.http.signed_blobs import SIGNED_BLOB_ROUTE, SignedBlobs
from hamn.http.v2 import DataPlane
from hamn.logs import configure_logging
from hamn.metadata.identities import IdentityStore
from hamn.metadata.jobs import JobStore
from hamn.metadata.leases import LeaseStore
from hamn.metadata.sign_in_failures import SignInFailureStore
from hamn.metadata.store import (
    MetadataStore,
    MetadataUnavailable,
    create_metadata_engine,
    migrate,
)
from hamn.services.acr_metadata import AcrMetadataService
from hamn.services.auth import AuthService, load_server_key
from hamn.services.gc import JOB_KIND as GC_JOB
from hamn.services.gc import GarbageCollector
from hamn.services.jobs import JobWorker, Periodic, Scheduler
from hamn.services.recycle_bin import RecycleBinService
from hamn.services.registry import RegistryService
from hamn.services.sign_in_limits import SharedSignInLimits
from hamn.services.signed_urls import BlobLinks, UrlSigner, url_signing_key
from hamn.services.uploads import BlobUploadService
from hamn.storage import BlobDriver, StorageError, create_driver

SETTINGS_ENV = "HAMN_SETTINGS_JSON"
#: The digest /readyz looks up in blob storage: the empty blob's, whose absence is fine.
_READINESS_PROBE = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _auth_service(settings: Settings, store: MetadataStore) -> AuthService:
    return AuthService(
        IdentityStore(store),
        server_key=load_server_key(settings.secret_key, settings.data_dir),
        refresh_lifetime=timedelta(hours=settings.refresh_token_hours),
    )


async def prepare_service(settings: Settings, store: MetadataStore) -> str | None:
    """What must exist before requests are served, done once per deployment start:
    the default registry, a token signing key and the first owner.

    Returns the first owner's password when it was generated here (to be shown
    once, never logged), else None.
    """
    if settings.default_registry:
        await store.ensure_registry(settings.default_registry)
    auth = _auth_service(settings, store)
    # Loading the keyring makes (or rotates) the signing key, and proves this server's
    # key unseals it.
    await auth.check_server_key()
    return await auth.bootstrap_owner(
        settings.bootstrap_username, settings.bootstrap_password or None
    )


def garbage_collector(
    settings: Settings, store: MetadataStore, driver: BlobDriver
) -> GarbageCollector:
    """The deployment's garbage collector; its lease (in the database) keeps ``hamn gc``
    and every job worker, on any host, from collecting at the same time."""
    return GarbageCollector(
        store,
        driver,
        lease_ttl=settings.job_lease,
        grace=settings.gc_grace,
        upload_timeout=settings.upload_timeout,
        delete_untagged=settings.gc_delete_untagged,
    )


def job_worker(settings: Settings, store: MetadataStore, driver: BlobDriver) -> JobWorker:
    """A job worker of the deployment (``hamn worker``): the handler of each job kind,
    and the periodic jobs it queues."""
    jobs = JobStore(store)
    collector = garbage_collector(settings, store, driver)
    return JobWorker(
        jobs,
        {GC_JOB: collector.run_job},
        scheduler=Scheduler(jobs, [Periodic(GC_JOB, settings.gc_interval)]),
        lease=settings.job_lease,
    )


def blob_driver(settings: Settings, store: MetadataStore) -> BlobDriver:
    """The deployment's blob driver; object-storage drivers keep their locks as leases
    in ``store``'s database, shared by every process."""
    return create_driver(
        settings.storage_driver,
        root=settings.resolved_storage_root,
        fsync=settings.fsync,
        prefix=settings.storage_prefix,
        leases=LeaseStore(store),
        spool_dir=settings.resolved_spool_dir,
        azure_connection_string=settings.azure_connection_string,
        azure_container=settings.azure_container,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_bucket=settings.s3_bucket,
        s3_access_key_id=settings.s3_access_key_id,
        s3_secret_access_key=settings.s3_secret_access_key,
    )


@contextlib.contextmanager
def deployment_stores(settings: Settings) -> Iterator[tuple[MetadataStore, BlobDriver]]:
    """The metadata store and blob driver of the deployment ``settings`` describe,
    for commands that work on them beside a running server (``hamn gc``, ``hamn fsck``); closed
    afterwards. No migration: they use the schema the server made."""
    engine = create_metadata_engine(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    store = MetadataStore(engine, threads=1)
    driver = blob_driver(settings, store)
    try:
        yield store, driver
    finally:
        store.close()
        driver.close()


def create_app(settings: Settings, *, prepare_database: bool = True) -> ASGIApp:
    """Build hamn's ASGI application from ``settings``.

    ``prepare_database`` migrates the schema and creates the default registry;
    ``hamn serve`` does that once itself, before it starts the workers.
    """
    os.makedirs(settings.data_dir, exist_ok=True)
    ensure_metrics_directory(settings.data_dir)
    metrics = HttpMetrics()
    engine = create_metadata_engine(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    if prepare_database:
        migrate(engine)
    store = MetadataStore(engine)
    driver = blob_driver(settings, store)
    registry = RegistryService(
        store,
        driver,
        domain=settings.domain,
        default_registry=settings.default_registry,
        quotas=settings.storage_quotas,
    )
    uploads = BlobUploadService(store, driver, quotas=settings.storage_quotas)
    auth = _auth_service(settings, store)
    access = RequestAuth(
        auth,
        registry,
        scheme=settings.scheme,
        limits=SharedSignInLimits(
            SignInFailureStore(store),
            per_user=settings.auth_failures_per_user,
            per_address=settings.auth_failures_per_address,
        ),
    )
    # hamn's own signed blob URLs are served even with redirects off, so links handed
    # out before a restart that turned them off still work until they expire.
    signed_blobs = SignedBlobs(
        BlobLinks(
            registry,
            driver,
            UrlSigner(url_signing_key(auth.server_key)),
            ttl=settings.redirect_ttl,
        ),
        scheme=settings.scheme,
    )
    data_plane = DataPlane(
        registry,
        uploads,
        access,
        redirect=signed_blobs.location if settings.blob_redirects else None,
    )
    acr_metadata_service = AcrMetadataService(store, driver, domain=settings.domain)
    acr_metadata = AcrMetadataApi(registry, acr_metadata_service, access)
    acr_deleted = AcrDeletedApi(
        acr_metadata_service, RecycleBinService(store, acr_metadata_service), access
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if prepare_database:
            await prepare_service(settings, store)
        # Garbage collection and other background work run in job worker processes
        # (``hamn worker``, started by ``hamn serve``), not in the HTTP workers.
        yield
        store.close()
        driver.close()

    async def healthz(_: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    async def readyz(_: Request) -> Response:
        # Ready means both back ends answer: one indexed read of the database, and a
        # look-up of a blob no one stores (a HEAD on object storage). Either failing
        # answers 503 through the error handler, so a load balancer stops sending here.
        await store.count("registries")
        await driver.stat(_READINESS_PROBE)
        return Response(b"ready\n", media_type="text/plain")

    # OPTIONS and the rest reach the dispatcher too, which answers UNSUPPORTED in JSON.
    methods = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "TRACE"]
    # The route kinds label metrics and log lines; /v2/<name>/... is told apart by its dispatcher.
    app = Starlette(
        routes=[
            Route("/v2/", of_kind("base", data_plane.base), methods=["GET", "HEAD"]),
            Route("/v2/_catalog", of_kind("catalog", data_plane.catalog), methods=["GET"]),
            Route(
                "/v2/{registry}/_catalog",
                of_kind("catalog", data_plane.catalog),
                methods=["GET"],
            ),
            Route(SIGNED_BLOB_ROUTE, of_kind("signed_blob", signed_blobs.serve), methods=methods),
            Route("/v2/{rest:path}", data_plane.dispatch, methods=methods),
            Route(
                "/acr/v1/_catalog", of_kind("acr_metadata", acr_metadata.catalog), methods=["GET"]
            ),
            Route(
                "/acr/v1/_deleted/_catalog",
                of_kind("acr_deleted", acr_deleted.catalog),
                methods=["GET"],
            ),
            Route(
                "/acr/v1/_deleted/{rest:path}",
                of_kind("acr_deleted", acr_deleted.dispatch),
                methods=methods,
            ),
            Route(
                "/acr/v1/{rest:path}",
                of_kind("acr_metadata", acr_metadata.dispatch),
                methods=methods,
            ),
            Route("/oauth2/token", of_kind("token", access.token_get), methods=["GET"]),
            Route("/oauth2/token", of_kind("token", access.token_post), methods=["POST"]),
            Route("/oauth2/exchange", of_kind("token", access.exchange), methods=["POST"]),
            *management_routes(
                auth.identities,
                store,
                auth.server_key,
                settings.domain,
                access.identity,
                storage_quotas=settings.storage_quotas,
            ),
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route(
                METRICS_PATH,
                metrics_endpoint(
                    metrics, access.require_root_read, also=[job_gauges(JobStore(store).counts)]
                ),
                methods=["GET"],
            ),
        ],
        exception_handlers={
            HamnError: counting_server_errors(metrics, handle_exception),
            # Named apart from Exception: Starlette re-raises whatever its catch-all
            # handler answered, and the server would log a traceback for every 503.
            MetadataUnavailable: counting_server_errors(metrics, handle_exception),
            StorageError: counting_server_errors(metrics, handle_exception),
            Exception: counting_server_errors(metrics, handle_exception),
        },
        lifespan=lifespan,
    )
    # Outermost, around Starlette's own error layer: a crash's response gets a request id too.
    access_log = settings.access_log or settings.log_level == "debug"
    return RequestObservability(app, metrics=metrics, access_log_enabled=access_log)


#: prctl(2) option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def end_with_parent() -> None:
    """Make this worker (HTTP or job) die when ``hamn serve`` does, even by SIGKILL (Linux).

    Otherwise a worker whose parent was killed lives on as an orphan that keeps
    the port and the database open. granian forks and respawns workers from its
    main thread, which lives as long as the server, so the death signal fires
    only when the server process is gone.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() == 1:  # the parent died before the call: nobody will signal
        os._exit(0)


def app_from_environment() -> ASGIApp:
    """Factory for granian workers: settings come from the parent ``hamn serve``."""
    end_with_parent()
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else Settings()
    configure_logging(settings.log_level)
    # ``hamn serve`` migrated the schema and created the default registry once,
    # before starting the workers.
    return create_app(settings, prepare_database=False)
