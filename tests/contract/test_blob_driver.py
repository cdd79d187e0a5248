"""The BlobDriver contract (hamn.storage.base), one suite run against every driver.

To add a backend, add a factory to ``DRIVERS``: it gets the test's temporary
directory and an exit stack for its clean-up, and returns a fresh, empty driver,
or calls ``pytest.skip`` when the service it needs is not configured (e.g.
``HAMN_TEST_S3_ENDPOINT`` unset: see object_storage_support). Tests here use only
the protocol; the few facts that hold for local disks alone are checked through
``local_path``, which other backends answer with None.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import pytest
from object_storage_support import object_driver

from hamn.oci.digest import digest_bytes
from hamn.storage import (
    BlobDriver,
    StorageBusy,
    StorageError,
    StorageNotFound,
    UploadWriter,
    create_driver,
)

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]
DriverFactory = Callable[[Path, ExitStack], BlobDriver]


def _filesystem(*, fsync: bool) -> DriverFactory:
    def make(tmp: Path, stack: ExitStack) -> BlobDriver:
        driver = create_driver("filesystem", root=str(tmp / "storage"), fsync=fsync)
        stack.callback(driver.close)
        return driver

    return make


def _objects(backend: str) -> DriverFactory:
    def make(tmp: Path, stack: ExitStack) -> BlobDriver:
        return object_driver(backend, tmp, stack)

    return make


DRIVERS: dict[str, DriverFactory] = {
    "filesystem": _filesystem(fsync=True),
    "filesystem-nofsync": _filesystem(fsync=False),
    "azure": _objects("azure"),
    "s3": _objects("s3"),
}


@pytest.fixture
def run() -> Iterator[Run[Any]]:
    """Run coroutines on one event loop for the whole test (drivers may hold loop-bound clients)."""
    loop = asyncio.new_event_loop()
    try:
        yield loop.run_until_complete
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobDriver]:
    with ExitStack() as stack:
        yield DRIVERS[request.param](tmp_path, stack)


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


async def listed(driver: BlobDriver) -> list[str]:
    return [d async for d in driver.list_blobs()]


async def put_blob(driver: BlobDriver, data: bytes, upload_id: str | None = None) -> str:
    """Upload and commit ``data``; return its digest."""
    digest = digest_bytes(data)
    writer = await driver.open_upload(upload_id or new_upload_id(), 0, create=True)
    await writer.write([data])
    await writer.commit(digest)
    return digest


_ids = iter(range(10**9))


def new_upload_id() -> str:
    return f"upload-{next(_ids):08d}-{os.getpid()}"


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# -- blobs -----------------------------------------------------------------------------------


def test_stat_of_missing_blob_is_none(driver: BlobDriver, run: Run[Any]) -> None:
    assert run(driver.stat(digest_bytes(b"nothing"))) is None


def test_read_of_missing_blob_is_not_found(driver: BlobDriver, run: Run[Any]) -> None:
    with pytest.raises(StorageNotFound):
        run(collect(driver.read(digest_bytes(b"nothing"))))


def test_driver_has_a_name(driver: BlobDriver) -> None:
    assert isinstance(driver.name, str) and driver.name


def test_upload_commit_then_stat_read_and_local_path(driver: BlobDriver, run: Run[Any]) -> None:
    data = b"hello, blob\n" * 1000
    digest = digest_bytes(data)
    upload_id = new_upload_id()

    writer: UploadWriter = run(driver.open_upload(upload_id, 0, create=True))
    assert writer.size == 0
    run(writer.write([data[:100], data[100:5000]]))
    assert writer.size == 5000
    run(writer.write([data[5000:]]))
    assert writer.size == len(data)
    run(writer.commit(digest))

    assert run(driver.stat(digest)) == len(data)
    assert run(collect(driver.read(digest))) == data
    path = driver.local_path(digest)
    if path is not None:
        assert Path(path).read_bytes() == data
    # The upload became the blob: it is gone as an upload.
    with pytest.raises(StorageNotFound):
        run(driver.open_upload(upload_id, 0, create=False))


def test_empty_blob(driver: BlobDriver, run: Run[Any]) -> None:
    digest = run(put_blob(driver, b""))
    assert run(driver.stat(digest)) == 0
    assert run(collect(driver.read(digest))) == b""


def test_large_blob_streams_in_several_chunks(driver: BlobDriver, run: Run[Any]) -> None:
    data = os.urandom(2 * 1024 * 1024 + 12345)
    digest = run(put_blob(driver, data))
    chunks = run(_chunks(driver.read(digest)))
    assert b"".join(chunks) == data
    assert all(chunks)  # no empty chunks
    middle = 1024 * 1024 - 7
    assert (
        run(collect(driver.read(digest, middle, 1024 * 1024 + 100)))
        == data[middle : middle + 1024 * 1024 + 100]
    )


async def _chunks(it: AsyncIterator[bytes]) -> list[bytes]:
    return [c async for c in it]


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, None), (0, 26), (3, None), (0, 4), (2, 5), (25, 1), (26, None), (26, 0), (10, 0)],
)
def test_read_with_offset_and_length(
    driver: BlobDriver, run: Run[Any], offset: int, length: int | None
) -> None:
    data = b"abcdefghijklmnopqrstuvwxyz"
    digest = run(put_blob(driver, data))
    end = None if length is None else offset + length
    assert run(collect(driver.read(digest, offset, length))) == data[offset:end]


def test_read_past_the_end_is_not_found(driver: BlobDriver, run: Run[Any]) -> None:
    digest = run(put_blob(driver, b"short"))
    with pytest.raises(StorageNotFound):
        run(collect(driver.read(digest, 2, 10)))


def test_many_small_buffers_in_one_write(driver: BlobDriver, run: Run[Any]) -> None:
    # More buffers than one writev call takes (IOV_MAX is 1024 on Linux), some empty.
    buffers = [bytes([i % 251]) * (i % 7) for i in range(3000)]
    data = b"".join(buffers)
    writer = run(driver.open_upload(new_upload_id(), 0, create=True))
    run(writer.write(buffers))
    assert writer.size == len(data)
    run(writer.commit(digest_bytes(data)))
    assert run(collect(driver.read(digest_bytes(data)))) == data


def test_commit_of_the_same_digest_twice_is_fine(driver: BlobDriver, run: Run[Any]) -> None:
    data = b"same content, two uploads"
    first = run(put_blob(driver, data))
    second = run(put_blob(driver, data))
    assert first == second
    assert run(driver.stat(first)) == len(data)
    assert run(collect(driver.read(first))) == data
    assert run(listed(driver)) == [first]


def test_delete(driver: BlobDriver, run: Run[Any]) -> None:
    keep = run(put_blob(driver, b"keep"))
    gone = run(put_blob(driver, b"gone"))
    run(driver.delete(gone))
    assert run(driver.stat(gone)) is None
    with pytest.raises(StorageNotFound):
        run(collect(driver.read(gone)))
    assert run(driver.stat(keep)) == 4
    # Deleting what is not there is not an error (GC and a client may race).
    run(driver.delete(gone))
    run(driver.delete(digest_bytes(b"never stored")))


def test_list_blobs(driver: BlobDriver, run: Run[Any]) -> None:
    assert run(listed(driver)) == []
    digests = {run(put_blob(driver, bytes([i]) * i)) for i in range(1, 6)}
    sha512 = digest_bytes(b"sha512 blob", "sha512")
    writer = run(driver.open_upload(new_upload_id(), 0, create=True))
    run(writer.write([b"sha512 blob"]))
    run(writer.commit(sha512))
    digests.add(sha512)
    found = run(listed(driver))
    assert len(found) == len(set(found))
    assert set(found) == digests
    removed = sorted(digests)[0]
    run(driver.delete(removed))
    assert set(run(listed(driver))) == digests - {removed}


def test_list_blobs_excludes_uploads(driver: BlobDriver, run: Run[Any]) -> None:
    writer = run(driver.open_upload(new_upload_id(), 0, create=True))
    run(writer.write([b"in progress"]))
    run(writer.close())
    assert run(listed(driver)) == []


# -- uploads ---------------------------------------------------------------------------------


def test_open_missing_upload_without_create_is_not_found(driver: BlobDriver, run: Run[Any]) -> None:
    with pytest.raises(StorageNotFound):
        run(driver.open_upload(new_upload_id(), 0, create=False))


def test_close_keeps_the_upload_for_a_later_request(driver: BlobDriver, run: Run[Any]) -> None:
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    run(writer.write([b"first chunk;"]))
    run(writer.close())
    writer = run(driver.open_upload(upload_id, 12, create=False))
    assert writer.size == 12
    run(writer.write([b"second chunk"]))
    data = b"first chunk;second chunk"
    run(writer.commit(digest_bytes(data)))
    assert run(collect(driver.read(digest_bytes(data)))) == data


def test_read_upload_returns_its_first_bytes(driver: BlobDriver, run: Run[Any]) -> None:
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    run(writer.write([b"0123456789"]))
    run(writer.close())
    assert run(collect(driver.read_upload(upload_id, 10))) == b"0123456789"
    assert run(collect(driver.read_upload(upload_id, 4))) == b"0123"
    assert run(collect(driver.read_upload(upload_id, 0))) == b""


def test_read_missing_upload_is_not_found(driver: BlobDriver, run: Run[Any]) -> None:
    with pytest.raises(StorageNotFound):
        run(collect(driver.read_upload(new_upload_id(), 1)))


def test_open_with_a_shorter_size_drops_the_extra_bytes(driver: BlobDriver, run: Run[Any]) -> None:
    # A request died after writing bytes that were never acknowledged: they are dropped.
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    run(writer.write([b"acked", b"-unacknowledged"]))
    run(writer.close())

    writer = run(driver.open_upload(upload_id, 5, create=False))
    assert writer.size == 5
    assert run(collect(driver.read_upload(upload_id, 5))) == b"acked"
    run(writer.write([b"+more"]))
    assert writer.size == 10
    run(writer.commit(digest_bytes(b"acked+more")))
    assert run(collect(driver.read(digest_bytes(b"acked+more")))) == b"acked+more"


def test_open_with_a_longer_size_is_not_found(driver: BlobDriver, run: Run[Any]) -> None:
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    run(writer.write([b"four"]))
    run(writer.close())
    with pytest.raises(StorageNotFound):
        run(driver.open_upload(upload_id, 5, create=False))
    # The failed open neither locked nor damaged the upload.
    writer = run(driver.open_upload(upload_id, 4, create=False))
    run(writer.close())
    assert run(collect(driver.read_upload(upload_id, 4))) == b"four"


def test_truncate_drops_a_failed_chunk(driver: BlobDriver, run: Run[Any]) -> None:
    writer = run(driver.open_upload(new_upload_id(), 0, create=True))
    run(writer.write([b"good", b"bad-chunk"]))
    run(writer.truncate(4))
    assert writer.size == 4
    run(writer.write([b"!"]))
    run(writer.commit(digest_bytes(b"good!")))
    assert run(collect(driver.read(digest_bytes(b"good!")))) == b"good!"


def test_second_open_is_busy_until_the_first_closes(driver: BlobDriver, run: Run[Any]) -> None:
    upload_id = new_upload_id()
    first = run(driver.open_upload(upload_id, 0, create=True))
    run(first.write([b"abc"]))
    with pytest.raises(StorageBusy):
        run(driver.open_upload(upload_id, 3, create=False))
    with pytest.raises(StorageBusy):
        run(driver.open_upload(upload_id, 3, create=True))
    # Busy is a retryable storage error.
    assert issubclass(StorageBusy, StorageError)
    run(first.close())
    second = run(driver.open_upload(upload_id, 3, create=False))
    assert second.size == 3
    run(second.close())


def test_concurrent_opens_one_wins(driver: BlobDriver, run: Run[Any]) -> None:
    upload_id = new_upload_id()
    run(run_close(driver.open_upload(upload_id, 0, create=True)))

    async def race() -> list[UploadWriter | BaseException]:
        return await asyncio.gather(
            *(driver.open_upload(upload_id, 0, create=False) for _ in range(8)),
            return_exceptions=True,
        )

    results = run(race())
    writers = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(writers) == 1
    assert all(isinstance(e, StorageBusy) for e in errors)
    run(writers[0].close())


async def run_close(opening: Awaitable[UploadWriter]) -> None:
    writer = await opening
    await writer.close()


def test_open_after_commit_is_not_found(driver: BlobDriver, run: Run[Any]) -> None:
    upload_id = new_upload_id()
    first = run(driver.open_upload(upload_id, 0, create=True))
    run(first.write([b"x"]))
    run(first.commit(digest_bytes(b"x")))
    with pytest.raises(StorageNotFound):
        run(driver.open_upload(upload_id, 1, create=False))


def test_cancel_removes_the_upload(driver: BlobDriver, run: Run[Any]) -> None:
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    run(writer.write([b"abandoned"]))
    run(writer.cancel())
    with pytest.raises(StorageNotFound):
        run(driver.open_upload(upload_id, 0, create=False))
    with pytest.raises(StorageNotFound):
        run(collect(driver.read_upload(upload_id, 1)))
    assert run(driver.stat(digest_bytes(b"abandoned"))) is None
    assert run(listed(driver)) == []


def test_writer_is_unusable_after_it_is_released(driver: BlobDriver, run: Run[Any]) -> None:
    for release in ("close", "cancel", "commit"):
        writer = run(driver.open_upload(new_upload_id(), 0, create=True))
        run(writer.write([release.encode()]))
        if release == "commit":
            run(writer.commit(digest_bytes(release.encode())))
        else:
            run(getattr(writer, release)())
        with pytest.raises(StorageError):
            run(writer.write([b"late"]))
        # Releasing twice is harmless.
        run(writer.close())


def test_delete_upload(driver: BlobDriver, run: Run[Any]) -> None:
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    run(writer.write([b"left behind"]))
    run(writer.close())
    run(driver.delete_upload(upload_id))
    with pytest.raises(StorageNotFound):
        run(driver.open_upload(upload_id, 0, create=False))
    # Idempotent, and quiet about uploads that never existed.
    run(driver.delete_upload(upload_id))
    run(driver.delete_upload(new_upload_id()))


def test_uploads_are_independent(driver: BlobDriver, run: Run[Any]) -> None:
    async def upload(i: int) -> str:
        data = f"blob number {i}".encode() * (i + 1)
        writer = await driver.open_upload(new_upload_id(), 0, create=True)
        for _ in range(3):
            await writer.write([data])
        await writer.commit(digest_bytes(data * 3))
        return digest_bytes(data * 3)

    async def all_uploads() -> list[str]:
        return await asyncio.gather(*(upload(i) for i in range(8)))

    digests = run(all_uploads())
    assert set(run(listed(driver))) == set(digests)


# -- atomic publication ----------------------------------------------------------------------


def test_commit_publishes_atomically(driver: BlobDriver, run: Run[Any]) -> None:
    data = os.urandom(64 * 1024)
    digest = digest_bytes(data)
    path = driver.local_path(digest)

    def assert_invisible() -> None:
        assert run(driver.stat(digest)) is None
        with pytest.raises(StorageNotFound):
            run(collect(driver.read(digest)))
        assert digest not in run(listed(driver))
        if path is not None:
            assert not os.path.exists(path)

    writer = run(driver.open_upload(new_upload_id(), 0, create=True))
    assert_invisible()
    run(writer.write([data[:1000]]))
    assert_invisible()
    run(writer.write([data[1000:]]))
    assert_invisible()  # all bytes written, but not committed
    run(writer.commit(digest))
    assert run(driver.stat(digest)) == len(data)
    assert run(collect(driver.read(digest))) == data
    if path is not None:
        assert os.path.getsize(path) == len(data)


def test_readers_during_commit_see_nothing_or_everything(driver: BlobDriver, run: Run[Any]) -> None:
    data = os.urandom(512 * 1024)
    digest = digest_bytes(data)

    async def scenario() -> set[int | None]:
        writer = await driver.open_upload(new_upload_id(), 0, create=True)
        await writer.write([data])
        seen: set[int | None] = set()
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                seen.add(await driver.stat(digest))
                await asyncio.sleep(0)

        watcher = asyncio.ensure_future(watch())
        await asyncio.sleep(0)
        await writer.commit(digest)
        done.set()
        await watcher
        seen.add(await driver.stat(digest))
        return seen

    assert run(scenario()) <= {None, len(data)}


# -- keys cannot escape ----------------------------------------------------------------------

BAD_UPLOAD_IDS = [
    "../x",
    "../../etc/passwd",
    "../uploads-evil-0001",
    "a/b/c/d/e/f/g",
    "",
    ".",
    "..",
    "x" * 1000,
    "abc\x00defghij",
    "/absolute/path",
]

BAD_DIGESTS = [
    "sha256:../../etc",
    "sha256:../../../x",
    "../x",
    "sha256:" + "a" * 63 + "/",
    "sha256:" + "a" * 64 + "/../x",
    "sha256:" + "A" * 64,
    "md5:" + "a" * 32,
    "sha256:",
    "",
    "/etc/passwd",
    "sha256/" + "a" * 64,
]


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[set[Path]]:
    """Files where a path trick would land; the test fails if any of them changes."""
    targets = [tmp_path / "x", tmp_path / "storage" / "x", tmp_path / "etc"]
    for t in targets:
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_bytes(b"sentinel")
    before = files_under(tmp_path)
    yield before
    for t in targets:
        assert t.read_bytes() == b"sentinel", t


@pytest.mark.parametrize("upload_id", BAD_UPLOAD_IDS)
def test_path_trick_upload_ids_are_refused(
    driver: BlobDriver, run: Run[Any], upload_id: str, sentinels: set[Path], tmp_path: Path
) -> None:
    with pytest.raises(StorageError):
        run(driver.open_upload(upload_id, 0, create=True))
    with pytest.raises(StorageError):
        run(driver.open_upload(upload_id, 0, create=False))
    with pytest.raises(StorageError):
        run(collect(driver.read_upload(upload_id, 1)))
    run(driver.delete_upload(upload_id))  # quietly does nothing
    assert files_under(tmp_path) == sentinels


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_path_trick_digests_are_refused(
    driver: BlobDriver, run: Run[Any], digest: str, sentinels: set[Path], tmp_path: Path
) -> None:
    with pytest.raises((ValueError, StorageError)):
        run(driver.stat(digest))
    with pytest.raises((ValueError, StorageError)):
        run(collect(driver.read(digest)))
    with pytest.raises((ValueError, StorageError)):
        run(driver.delete(digest))
    with pytest.raises((ValueError, StorageError)):
        driver.local_path(digest)
    assert files_under(tmp_path) == sentinels


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_commit_to_a_path_trick_digest_is_refused(
    driver: BlobDriver, run: Run[Any], digest: str, sentinels: set[Path], tmp_path: Path
) -> None:
    upload_id = new_upload_id()
    writer = run(driver.open_upload(upload_id, 0, create=True))
    run(writer.write([b"payload"]))
    with pytest.raises((ValueError, StorageError)):
        run(writer.commit(digest))
    assert run(listed(driver)) == []
    # The upload survives a refused commit (and its writer was released).
    writer = run(driver.open_upload(upload_id, 7, create=False))
    run(writer.cancel())
    assert files_under(tmp_path) == sentinels


def test_upload_id_with_a_trailing_newline_is_refused(driver: BlobDriver, run: Run[Any]) -> None:
    # ``$`` in a Python regex also matches before a final "\n".
    with pytest.raises(StorageError):
        run(driver.open_upload("abcdefgh\n", 0, create=True))


def test_digest_with_a_trailing_newline_is_refused(driver: BlobDriver, run: Run[Any]) -> None:
    digest = run(put_blob(driver, b"aliased"))
    with pytest.raises((ValueError, StorageError)):
        run(driver.stat(digest + "\n"))


# -- choosing a driver -----------------------------------------------------------------------


def test_unknown_driver_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown storage driver"):
        create_driver("floppy", root=str(tmp_path))


def test_filesystem_driver_needs_a_root() -> None:
    with pytest.raises(ValueError, match="root"):
        create_driver("filesystem")
