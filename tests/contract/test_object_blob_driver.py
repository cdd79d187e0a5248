"""What the object-storage drivers (Azure, S3) promise beyond the shared BlobDriver contract:
segmented uploads composed into one blob, uploads shared between processes through
leases, the key layout, signed URLs, fsck's scans and errors that name no secret.

Real services only (Azurite, a SeaweedFS S3 gateway): see object_storage_support.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from object_storage_support import (
    fresh_container,
    leases_for,
    object_driver,
    object_params,
)
from test_blob_driver import Run, collect, listed, new_upload_id, put_blob
from test_blob_driver import run as run  # the fixture: one event loop per test

from hamn.oci.digest import digest_bytes
from hamn.storage import StorageBusy, StorageError, StorageNotFound, UploadWriter, create_driver
from hamn.storage.objects import ObjectStorageDriver, redact

MiB = 1024 * 1024
BACKENDS = ["azure", "s3"]


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def driver(backend: str, tmp_path: Path, stack: ExitStack) -> ObjectStorageDriver:
    made = object_driver(backend, tmp_path, stack)
    assert isinstance(made, ObjectStorageDriver)
    return made


def sibling(driver: ObjectStorageDriver, tmp: Path, stack: ExitStack) -> ObjectStorageDriver:
    """Another process's driver on the same storage and leases (its own spool)."""
    other = ObjectStorageDriver(
        driver.objects, driver.leases, str(tmp / "other-spool"), prefix=driver.prefix
    )
    stack.callback(other._io.shutdown)
    return other


def flushed(driver: ObjectStorageDriver, run: Run[Any], data: bytes) -> tuple[str, UploadWriter]:
    """A new upload holding ``data`` flushed to storage, and its writer, still open."""
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    run(writer.write([data]))
    run(writer.flush())
    return upload_id, writer


def keys(driver: ObjectStorageDriver) -> list[str]:
    return [i.key[len(driver.prefix) :] for i in driver.objects.list(driver.prefix)]


# -- segmented uploads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes",
    [
        [6 * MiB, 6 * MiB, 100],  # S3: every part copied on the service's side
        [100, 6 * MiB, 7],  # S3: a part under 5 MiB, so concatenated through the spool
        [3, 0, 4, 5],  # an empty request between two
        [0, 9],
    ],
    ids=["big-parts", "small-first", "tiny", "empty-first"],
)
def test_segments_of_several_requests_compose_into_the_blob(
    driver: ObjectStorageDriver, run: Run[Any], sizes: list[int]
) -> None:
    parts = [os.urandom(n) for n in sizes]
    data = b"".join(parts)
    upload_id = new_upload_id()
    offset = 0
    for part in parts[:-1]:
        writer = run(driver.open_upload(upload_id, offset, create=offset == 0))
        run(writer.write([part]))
        run(writer.flush())
        offset += len(part)
        run(writer.close())
    writer = run(driver.open_upload(upload_id, offset, create=False))
    run(writer.write([parts[-1]]))
    run(writer.commit(digest_bytes(data)))

    assert run(driver.stat(digest_bytes(data))) == len(data)
    assert run(collect(driver.read(digest_bytes(data)))) == data
    assert run(driver.stat_upload(upload_id)) is None  # the segments are gone
    assert keys(driver) == [f"blobs/sha256/{digest_bytes(data)[7:9]}/{digest_bytes(data)[7:]}"]


def test_key_layout(driver: ObjectStorageDriver, run: Run[Any]) -> None:
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    run(writer.close())
    assert keys(driver) == [f"uploads/{upload_id}/{0:020d}"]  # an upload with no bytes yet
    writer = run(driver.open_upload(upload_id, 0, create=False))
    run(writer.write([b"abc"]))
    run(writer.flush())
    run(writer.write([b"defg"]))
    run(writer.flush())
    assert keys(driver) == [f"uploads/{upload_id}/{0:020d}", f"uploads/{upload_id}/{3:020d}"]
    run(writer.commit(digest_bytes(b"abcdefg")))
    hexpart = digest_bytes(b"abcdefg")[7:]
    assert keys(driver) == [f"blobs/sha256/{hexpart[:2]}/{hexpart}"]
    assert all(i.key.startswith(driver.prefix) for i in driver.objects.list(driver.prefix))


def test_flushed_bytes_are_shared_with_other_processes(
    driver: ObjectStorageDriver, run: Run[Any], tmp_path: Path, stack: ExitStack
) -> None:
    other = sibling(driver, tmp_path, stack)
    upload_id, writer = flushed(driver, run, b"first;")
    # The lease keeps the other process out while this writer lives...
    with pytest.raises(StorageBusy):
        run(other.open_upload(upload_id, 6, create=False))
    # ...but what was flushed is readable there already.
    assert run(collect(other.read_upload(upload_id, 6))) == b"first;"
    run(writer.write([b"never acknowledged"]))
    run(writer.close())
    # The next request lands on the other process, at the acknowledged offset.
    writer = run(other.open_upload(upload_id, 6, create=False))
    run(writer.write([b"second"]))
    run(writer.commit(digest_bytes(b"first;second")))
    assert run(collect(driver.read(digest_bytes(b"first;second")))) == b"first;second"


def test_truncate_into_a_stored_segment(driver: ObjectStorageDriver, run: Run[Any]) -> None:
    _, writer = flushed(driver, run, b"0123456789")
    run(writer.write([b"abc"]))
    run(writer.truncate(4))
    assert writer.size == 4
    run(writer.write([b"!"]))
    run(writer.commit(digest_bytes(b"0123!")))
    assert run(collect(driver.read(digest_bytes(b"0123!")))) == b"0123!"


@pytest.mark.parametrize("ending", ["close", "cancel", "commit"])
def test_every_way_out_releases_the_lease(
    driver: ObjectStorageDriver, run: Run[Any], ending: str
) -> None:
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    data = ending.encode()
    run(writer.write([data]))
    finish = {"close": writer.close, "cancel": writer.cancel}
    run(writer.commit(digest_bytes(data)) if ending == "commit" else finish[ending]())
    # Nobody holds the upload any more: taking its lease succeeds at once.
    assert run(driver.leases.acquire(f"upload:{upload_id}", "someone-else", 30))


def test_a_blob_pushed_again_is_touched_not_rewritten(
    driver: ObjectStorageDriver, run: Run[Any]
) -> None:
    data = os.urandom(100_000)
    digest = run(put_blob(driver, data))
    first = driver.objects.head(driver.blob_key(digest))
    assert first is not None
    time.sleep(1.1)  # last-modified times have a resolution of a second
    between = time.time()
    time.sleep(1.1)
    # A chunked push of the same bytes: nothing is composed, the blob is only touched.
    upload_id, writer = flushed(driver, run, data[:50_000])
    run(writer.write([data[50_000:]]))
    run(writer.commit(digest))
    again = driver.objects.head(driver.blob_key(digest))
    assert again is not None and again.modified > between > first.modified
    assert run(collect(driver.read(digest))) == data
    assert run(driver.stat_upload(upload_id)) is None
    # To fsck the blob was published just now: a removal racing the push leaves it.
    assert not run(driver.remove_blob_if_unchanged(digest, between))


def test_a_blob_pushed_again_while_it_streams_reads_on(
    driver: ObjectStorageDriver, run: Run[Any]
) -> None:
    data = os.urandom(9 * MiB)
    digest = run(put_blob(driver, data))

    async def read_across_a_push() -> bytes:
        chunks = driver.read(digest)
        first = await anext(chunks)
        await put_blob(driver, data)  # the same bytes published again: a new object
        return first + b"".join([c async for c in chunks])

    assert run(read_across_a_push()) == data


# -- storage service --------------------------------------------------------------------------


def test_container_is_created_on_first_write(
    backend: str, run: Run[Any], tmp_path: Path, stack: ExitStack
) -> None:
    driver = object_driver(backend, tmp_path, stack, container=fresh_container())
    # Reads of a container that does not exist yet find nothing, quietly.
    assert run(driver.stat(digest_bytes(b"x"))) is None
    assert run(listed(driver)) == []
    with pytest.raises(StorageNotFound):
        run(collect(driver.read(digest_bytes(b"x"))))
    digest = run(put_blob(driver, b"first blob in a new container"))
    assert run(collect(driver.read(digest))) == b"first blob in a new container"


def test_signed_url_serves_the_blob(driver: ObjectStorageDriver, run: Run[Any]) -> None:
    data = os.urandom(3000)
    digest = run(put_blob(driver, data))
    url = run(driver.signed_url(digest, 600))
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert ranged.content == data[10:20]


def test_signed_url_expires(driver: ObjectStorageDriver, run: Run[Any]) -> None:
    digest = run(put_blob(driver, b"short-lived"))
    url = run(driver.signed_url(digest, 1))
    assert url is not None
    time.sleep(2.5)
    assert httpx.get(url).status_code == 403


def test_unreachable_service_is_a_retryable_storage_error(
    backend: str, run: Run[Any], tmp_path: Path, stack: ExitStack
) -> None:
    params = object_params(backend)
    secret = ""
    if backend == "azure":
        conn = str(params["azure_connection_string"])
        endpoint = next(p for p in conn.split(";") if p.startswith("BlobEndpoint="))
        params["azure_connection_string"] = conn.replace(
            endpoint, "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1"
        )
        secret = conn.split("AccountKey=", 1)[1].split(";", 1)[0]
    else:
        params["s3_endpoint_url"] = "http://127.0.0.1:9"
        secret = str(params["s3_secret_access_key"])
    driver = create_driver(
        backend, leases=leases_for(tmp_path, stack), spool_dir=str(tmp_path / "spool"), **params
    )
    stack.callback(driver.close)
    started = time.monotonic()
    with pytest.raises(StorageError) as failure:
        run(driver.stat(digest_bytes(b"x")))
    assert not isinstance(failure.value, StorageNotFound)
    assert secret not in str(failure.value)
    assert failure.value.__cause__ is None  # no SDK exception (and its URLs) chained
    assert time.monotonic() - started < 30  # a quick 503, not a hung request


def test_redact_removes_signatures_and_keys() -> None:
    text = (
        "GET http://h/c/b?sv=2024&sig=abc%2Fdef&se=1 failed; "
        "AccountKey=Eby8vdM02x==;X-Amz-Signature=f00d&X-Amz-Credential=AKIA/x"
    )
    cleaned = redact(text)
    for secret in ("abc%2Fdef", "Eby8vdM02x", "f00d", "AKIA"):
        assert secret not in cleaned
    assert "sv=2024" in cleaned


# -- fsck and garbage collection ----------------------------------------------------------------


def test_scans_find_blobs_uploads_and_strays(driver: ObjectStorageDriver, run: Run[Any]) -> None:
    digest = run(put_blob(driver, b"a blob"))
    upload_id, writer = flushed(driver, run, b"12345")
    run(writer.write([b"678"]))
    run(writer.close())
    driver.objects.put_bytes(f"{driver.prefix}blobs/sha256/zz/not-a-digest", b"?")
    driver.objects.put_bytes(f"{driver.prefix}uploads/x/junk", b"??")

    async def scans() -> tuple[list[Any], list[Any]]:
        return [f async for f in driver.scan_blobs()], [f async for f in driver.scan_uploads()]

    blobs, uploads = run(scans())
    assert [(f.key, f.size, f.stray) for f in blobs] == [
        (digest, 6, False),
        ("blobs/sha256/zz/not-a-digest", 1, True),
    ]
    assert [(f.key, f.size, f.stray) for f in uploads] == [
        (upload_id, 8, False),
        ("uploads/x/junk", 2, True),
    ]
    stored = run(driver.stat_upload(upload_id))
    assert stored is not None and stored.size == 8
    assert abs(stored.changed_at - time.time()) < 120
    assert run(listed(driver)) == [digest]


def test_removals_respect_time_and_writers(driver: ObjectStorageDriver, run: Run[Any]) -> None:
    digest = run(put_blob(driver, b"removable"))
    assert not run(driver.remove_blob_if_unchanged(digest, time.time() - 3600))
    assert run(driver.stat(digest)) == 9
    assert run(driver.remove_blob_if_unchanged(digest, time.time() + 60))
    assert run(driver.stat(digest)) is None
    assert not run(driver.remove_blob_if_unchanged(digest, time.time() + 60))

    upload_id, writer = flushed(driver, run, b"held")
    assert not run(driver.remove_upload_if_idle(upload_id, time.time() + 60))  # held
    run(writer.close())
    assert not run(driver.remove_upload_if_idle(upload_id, time.time() - 3600))  # recent
    assert run(driver.remove_upload_if_idle(upload_id, time.time() + 60))
    assert run(driver.stat_upload(upload_id)) is None


def test_quarantine_moves_the_blob_aside(driver: ObjectStorageDriver, run: Run[Any]) -> None:
    digest = run(put_blob(driver, b"corrupt, say"))
    assert run(driver.quarantine_blob(digest, time.time() - 3600)) is None
    moved = run(driver.quarantine_blob(digest, time.time() + 60))
    assert moved is not None and moved.startswith(f"{driver.prefix}quarantine/sha256-")
    assert run(driver.stat(digest)) is None
    assert b"".join(driver.objects.get(moved, 0, None)) == b"corrupt, say"
    assert run(listed(driver)) == []


def test_digest_lock_is_shared_and_reentrant(
    driver: ObjectStorageDriver, run: Run[Any], tmp_path: Path, stack: ExitStack
) -> None:
    other = sibling(driver, tmp_path, stack)
    digest = run(put_blob(driver, b"locked"))

    async def scenario() -> list[str]:
        events: list[str] = []

        async def holder() -> None:
            async with driver.digest_lock(digest):
                events.append("held")
                # Re-entrant in the same task: GC removes under the lock it holds.
                assert await driver.remove_blob_if_unchanged(digest, time.time() - 3600) is False
                await asyncio.sleep(0.5)
                events.append("released")

        async def waiter() -> None:
            await asyncio.sleep(0.1)
            async with other.digest_lock(digest):
                events.append("other")

        await asyncio.gather(holder(), waiter())
        return events

    assert run(scenario()) == ["held", "released", "other"]


# -- choosing a driver ----------------------------------------------------------------------------


def test_object_drivers_need_their_settings(tmp_path: Path, stack: ExitStack) -> None:
    leases = leases_for(tmp_path, stack)
    spool = str(tmp_path / "spool")
    with pytest.raises(ValueError, match="bucket"):
        create_driver("s3", leases=leases, spool_dir=spool)
    with pytest.raises(ValueError, match="AccountKey"):
        create_driver("azure", leases=leases, spool_dir=spool, azure_connection_string="")
    with pytest.raises(ValueError, match="leases"):
        create_driver("s3", s3_bucket="b", spool_dir=spool)
    with pytest.raises(ValueError, match="unknown storage driver parameters: colour"):
        create_driver("s3", s3_bucket="b", leases=leases, spool_dir=spool, colour="red")
    with pytest.raises(ValueError, match="secret"):
        create_driver("s3", s3_bucket="b", leases=leases, spool_dir=spool, s3_access_key_id="k")
