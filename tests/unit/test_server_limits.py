"""Request body caps (limits) and failure buckets (ratelimit) of the registry server."""

from __future__ import annotations

import asyncio

import pytest

from dockyard.registry.server import limits
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.ratelimit import Buckets


@pytest.mark.parametrize(
    ("path", "cap"),
    [
        ("/token", limits.TOKEN_FORM_MAX),
        ("/v2/a/b/manifests/latest", limits.MAX_MANIFEST_SIZE),
        ("/v2/a/b/blobs/uploads/", None),
        ("/v2/a/b/blobs/uploads/0b5e1c8a-1111-2222-3333-444455556666", None),
        ("/v2/a/blobs/uploads/b/manifests/1", limits.MAX_MANIFEST_SIZE),  # a repo named so
        ("/v2/a/b/blobs/sha256:00", limits.OTHER_MAX),
        ("/v2/", limits.OTHER_MAX),
    ],
)
def test_body_cap_by_route(path, cap):
    assert limits.body_cap(path) == cap


def read_all(messages: list[dict], cap: int | None, headers=()) -> bytes:
    queue = list(messages)

    async def receive() -> dict:
        return queue.pop(0)

    bounded = limits.BoundedReceive(receive, {"headers": list(headers)}, cap)

    async def run() -> bytes:
        body = b""
        while True:
            message = await bounded()
            body += message.get("body", b"")
            if not message.get("more_body"):
                return body

    return asyncio.run(run())


def chunks(*parts: bytes) -> list[dict]:
    return [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]


def test_bounded_receive_counts_what_arrives():
    assert read_all(chunks(b"ab", b"cd"), cap=4) == b"abcd"
    with pytest.raises(APIError) as e:
        read_all(chunks(b"ab", b"cd", b"e"), cap=4)
    assert e.value.status == 413 and e.value.code == "PAYLOAD_TOO_LARGE"
    assert e.value.headers["Connection"] == "close"
    assert read_all(chunks(b"x" * 100), cap=None) == b"x" * 100  # streamed routes


def test_bounded_receive_refuses_a_declared_length_before_reading():
    with pytest.raises(APIError):
        read_all([], cap=4, headers=[(b"content-length", b"5")])  # nothing was received
    assert read_all(chunks(b"abc"), cap=4, headers=[(b"content-length", b"3")]) == b"abc"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_buckets_spend_refill_and_give_back():
    clock = Clock()
    buckets = Buckets(burst=2, per_minute=6, clock=clock)  # one token every 10 s
    assert buckets.take("a") is None and buckets.take("a") is None
    assert buckets.exhausted("a")
    assert buckets.take("a") == pytest.approx(10.0)
    assert buckets.take("b") is None  # keys are independent
    clock.now = 5.0
    assert buckets.take("a") == pytest.approx(5.0)
    clock.now = 10.0
    assert buckets.take("a") is None
    buckets.give_back("a")  # that attempt was fine after all
    assert buckets.take("a") is None
    clock.now = 1000.0
    assert not buckets.exhausted("a")


def test_buckets_table_is_bounded():
    clock = Clock()
    buckets = Buckets(burst=1, per_minute=1, max_keys=3, clock=clock)
    for key in "abc":
        assert buckets.take(key) is None
    clock.now = 100.0  # a, b, c are full again
    assert buckets.take("d") is None  # over the bound: the full ones go, d stays empty
    assert buckets.exhausted("d") and len(buckets._buckets) == 1
    for key in "efg":  # nothing full to forget: the least recently used goes
        assert buckets.take(key) is None
    assert len(buckets._buckets) == 3 and not buckets.exhausted("d")


def test_bounded_receive_knows_an_unread_body():
    async def receive() -> dict:
        return {"type": "http.request", "body": b"abc", "more_body": False}

    def bounded(*headers) -> limits.BoundedReceive:
        return limits.BoundedReceive(receive, {"headers": list(headers)}, 10)

    assert not bounded().unread  # no body at all
    assert not bounded((b"content-length", b"0")).unread
    assert bounded((b"transfer-encoding", b"chunked")).unread
    declared = bounded((b"content-length", b"3"))
    assert declared.unread
    asyncio.run(declared())
    assert not declared.unread
