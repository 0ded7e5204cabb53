"""Upload bodies are verified before their last byte leaves; retry timing."""

import io

import pytest

from dockyard.errors import DigestError
from dockyard.oci.descriptor import Descriptor
from dockyard.registry.client import RetryPolicy
from dockyard.registry.client.retry import retryable_status
from dockyard.registry.client.upload import read_full, verified_chunks


class Trickle(io.RawIOBase):
    """A stream that returns at most 3 bytes per read, as sockets may."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(min(n, 3) if n >= 0 else 3)


def desc_of(data: bytes) -> Descriptor:
    return Descriptor.of_bytes("application/octet-stream", data)


def test_chunks_are_full_sized_even_from_a_trickle():
    data = bytes(range(256)) * 4
    assert read_full(Trickle(data), 10) == data[:10]
    chunks = list(verified_chunks(Trickle(data), desc_of(data), 100))
    assert [len(c) for c in chunks] == [100] * 10 + [24]
    assert b"".join(chunks) == data


def test_empty_blob():
    assert list(verified_chunks(io.BytesIO(b""), desc_of(b""), 10)) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a" * 25, "content has digest sha256:"),
        (b"b" * 24, "size 24 does not match expected 25"),
        (b"b" * 26, "more than the expected 25 bytes"),
    ],
)
def test_the_last_chunk_is_held_back_until_verified(data, message):
    expected = desc_of(b"b" * 25)
    sent = []
    with pytest.raises(DigestError, match=f"blob {expected.digest}: {message}"):
        for chunk in verified_chunks(io.BytesIO(data), expected, 10):
            sent.append(chunk)
    assert sum(map(len, sent)) < expected.size


def test_backoff_grows_is_capped_and_honours_retry_after():
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    for failures, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (9, 5.0)]:
        assert ceiling / 2 <= policy.delay(failures) <= ceiling
    assert policy.delay(0, retry_after="3") >= 3.0
    assert policy.delay(0, retry_after="999") == 5.0
    assert policy.delay(0, retry_after="Wed, 21 Oct 2015 07:28:00 GMT") <= 1.0
    assert RetryPolicy(base_delay=0).delay(3) == 0


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (501, False),
        (505, False),
        (400, False),
        (404, False),
        (413, False),
        (200, False),
    ],
)
def test_retryable_status(status, retry):
    assert retryable_status(status) is retry


def test_a_blob_the_source_verifies_is_hashed_once_on_its_way_up():
    """The stream a push hands the registry is the source's verifying one, so
    ``verified_chunks`` does not hash the blob again (it once did: twice the CPU)."""
    from dockyard.oci import digest as digests
    from dockyard.registry.client.homes import _Watched

    data = b"layer" * 1000
    desc = desc_of(data)
    source = digests.VerifyingReader(io.BytesIO(data), desc.digest, desc.size)
    watched = _Watched(source)
    assert digests.verified(watched, desc.digest, desc.size) is watched
    assert b"".join(verified_chunks(watched, desc, 1024)) == data
    assert watched.touched
    bad = _Watched(digests.VerifyingReader(io.BytesIO(data[:-1] + b"X"), desc.digest, desc.size))
    with pytest.raises(DigestError):
        list(verified_chunks(bad, desc, 1024))
