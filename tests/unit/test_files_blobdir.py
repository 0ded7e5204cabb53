import hashlib
import io
import os
import threading

import pytest

from dockyard.errors import DigestError, NotFound
from dockyard.files.atomic import is_temp
from dockyard.files.blobdir import BlobDir
from dockyard.oci import digest as digests
from dockyard.oci.digest import CHUNK
from tests.killing import StallingReader, killed_when_ready

DATA = b"some blob content\n" * 1000
DIGEST = digests.of_bytes(DATA)


def files_in(path):
    return sorted(p.name for p in path.rglob("*") if p.is_file())


def test_write_then_read_back(tmp_path):
    blobs = BlobDir(tmp_path / "blobs")
    path = blobs.write(DIGEST, io.BytesIO(DATA), len(DATA))
    assert path == tmp_path / "blobs" / "sha256" / DIGEST.split(":")[1]
    assert path.read_bytes() == DATA
    assert blobs.has(DIGEST) and blobs.size(DIGEST) == len(DATA)
    assert list(blobs) == [DIGEST]
    with blobs.open(DIGEST, len(DATA)) as f:
        assert f.read() == DATA


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        (b"not the content", None, "content has digest"),
        (DATA[:-1], len(DATA), "size"),
        (DATA + b"x", len(DATA), "more than the expected"),
    ],
)
def test_mismatch_raises_and_keeps_nothing(tmp_path, data, size, message):
    blobs = BlobDir(tmp_path / "blobs")
    with pytest.raises(DigestError, match=message) as err:
        blobs.write(DIGEST, io.BytesIO(data), size)
    assert DIGEST in str(err.value)
    assert not blobs.has(DIGEST)
    assert files_in(tmp_path) == []


def test_write_streams_in_bounded_chunks(tmp_path):
    data = os.urandom(3 * CHUNK + 5)
    asked = []

    class Recording(io.BytesIO):
        def read(self, n=-1):
            asked.append(n)
            return super().read(n)

    BlobDir(tmp_path).write(digests.of_bytes(data), Recording(data), len(data))
    assert asked and all(0 < n <= CHUNK for n in asked)


def test_corrupt_blob_on_disk_fails_when_read(tmp_path):
    blobs = BlobDir(tmp_path)
    blobs.write_bytes(DATA)
    blobs.path(DIGEST).write_bytes(b"tampered")
    with blobs.open(DIGEST) as f, pytest.raises(DigestError, match=DIGEST):
        while f.read(CHUNK):
            pass
    with pytest.raises(DigestError):
        blobs.read_bytes(DIGEST)


def test_missing_blob_is_not_found(tmp_path):
    blobs = BlobDir(tmp_path)
    with pytest.raises(NotFound, match=DIGEST):
        blobs.open(DIGEST)
    assert not blobs.delete(DIGEST)


def test_existing_blob_is_not_rewritten(tmp_path):
    blobs = BlobDir(tmp_path)
    blobs.write_bytes(DATA)
    unread = io.BytesIO(b"would fail verification")
    blobs.write(DIGEST, unread)
    assert unread.tell() == 0
    assert blobs.read_bytes(DIGEST) == DATA


def test_iteration_skips_temps_and_foreign_names(tmp_path):
    blobs = BlobDir(tmp_path)
    blobs.write_bytes(DATA)
    (tmp_path / "sha256" / ".tmp-abc-123").write_bytes(DATA[:10])
    (tmp_path / "sha256" / "README").write_text("hi")
    assert list(blobs) == [DIGEST]
    assert blobs.remove_stale_temps(older_than=0) == 1
    assert sorted(p.name for p in (tmp_path / "sha256").iterdir()) == sorted(["README", DIGEST[7:]])


def test_delete(tmp_path):
    blobs = BlobDir(tmp_path)
    blobs.write_bytes(DATA)
    assert blobs.delete(DIGEST)
    assert not blobs.has(DIGEST) and list(blobs) == []


def test_temp_files_go_to_tmp_dir(tmp_path):
    seen = []

    class Peeking(io.BytesIO):
        def read(self, n=-1):
            seen.extend(p.name for p in (tmp_path / "tmp").iterdir())
            return super().read(n)

    blobs = BlobDir(tmp_path / "blobs", tmp_dir=tmp_path / "tmp")
    blobs.write(DIGEST, Peeking(DATA))
    assert seen and all(is_temp(name) for name in seen)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert blobs.read_bytes(DIGEST) == DATA


def test_concurrent_writers_of_one_digest_both_succeed(tmp_path):
    blobs = BlobDir(tmp_path)
    other_done = threading.Event()

    class Paused(io.BytesIO):
        """Hands out half the blob, then waits until the other writer has finished."""

        def read(self, n=-1):
            if self.tell() == len(DATA) // 2:
                assert other_done.wait(30)
            return super().read(min(n, len(DATA) // 2) if n > 0 else len(DATA) // 2)

    errors = []

    def slow_writer():
        try:
            blobs.write(DIGEST, Paused(DATA), len(DATA))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    blobs.write(DIGEST, io.BytesIO(DATA), len(DATA))
    other_done.set()
    thread.join()
    assert errors == []
    assert blobs.read_bytes(DIGEST) == DATA
    assert files_in(tmp_path) == [DIGEST[7:]]


def _write_until_killed(root, ready_fd):
    BlobDir(root).write(DIGEST, StallingReader(DATA, ready_fd), len(DATA))


def test_sigkill_mid_write_leaves_no_blob(tmp_path):
    with killed_when_ready(_write_until_killed, tmp_path):
        pass

    blobs = BlobDir(tmp_path)
    leftovers = list((tmp_path / "sha256").iterdir())
    assert len(leftovers) == 1 and is_temp(leftovers[0].name)  # killed mid-write indeed
    assert not blobs.has(DIGEST) and list(blobs) == []

    blobs.write(DIGEST, io.BytesIO(DATA), len(DATA))
    assert hashlib.sha256(blobs.path(DIGEST).read_bytes()).hexdigest() == DIGEST[7:]
    assert blobs.remove_stale_temps(older_than=0) == 1
    assert list(blobs) == [DIGEST]


def test_ingest_a_blob_whose_digest_comes_last(tmp_path):
    blobs = BlobDir(tmp_path / "blobs", tmp_dir=tmp_path / "tmp")
    with blobs.ingest() as blob:
        blob.file.write(DATA[:100])
        blob.file.write(memoryview(DATA)[100:])
        assert blob.commit(DIGEST) == blobs.path(DIGEST)
    assert blobs.read_bytes(DIGEST) == DATA
    assert list((tmp_path / "tmp").iterdir()) == []


def test_ingest_keeps_nothing_unless_committed_with_the_right_digest(tmp_path):
    blobs = BlobDir(tmp_path)
    with blobs.ingest() as blob:
        blob.file.write(DATA)
    with pytest.raises(DigestError, match=DIGEST), blobs.ingest() as blob:
        blob.file.write(b"other content")
        blob.commit(DIGEST)
    with pytest.raises(RuntimeError), blobs.ingest() as blob:
        blob.file.write(DATA)
        raise RuntimeError("packing failed")
    assert files_in(tmp_path) == []


def test_unsynced_blobs_from_another_boot_count_as_absent(tmp_path):
    """Blobs written without fsync are marked; after a crash (a marker from another
    boot, or emptied) the blob may be torn, so it is absent until written again."""
    from dockyard.files.unsynced import UnsyncedMarkers

    markers = tmp_path / "unsynced"
    blobs = BlobDir(tmp_path / "blobs", unsynced=UnsyncedMarkers(markers))
    digest = blobs.write_bytes(b"layer bytes")
    marker = markers / f"sha256-{digest.split(':')[1]}"
    assert blobs.has(digest) and marker.read_text()

    blobs.path(digest).write_bytes(b"layer")  # what a crash can leave of a file
    marker.write_text("")  # ...and of its marker
    assert not blobs.has(digest)
    assert blobs.write_bytes(b"layer bytes") == digest  # written again, not skipped
    assert blobs.has(digest) and blobs.read_bytes(digest) == b"layer bytes"

    blobs.settle()  # one sync; this boot's markers go, the blob stays
    assert list(markers.iterdir()) == [] and blobs.has(digest)
