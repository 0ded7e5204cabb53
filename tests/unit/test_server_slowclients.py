"""slowclients: the head deadline in both of uvicorn's HTTP protocols (served in a thread
on loopback), and the per-client upload slots."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvicorn

from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.slowclients import UploadSlots, http_protocol
from tests.support.waiting import wait_until


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(params=["h11", "httptools"])
def port(request):
    config = uvicorn.Config(
        hello,
        host="127.0.0.1",
        port=0,
        http=http_protocol(0.5, request.param),
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "the server thread to listen")
    assert server.started
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join()
    sock.close()


def test_complete_head_is_served(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"hello") and (more := s.recv(4096)):
            answer += more
    assert answer.startswith(b"HTTP/1.1 200")


def test_trickled_head_is_closed(port):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(0.1)
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                s.send(bytes([byte]))
                if s.recv(4096) == b"":
                    break
            except TimeoutError:
                continue  # the attack: one byte per 0.1 s
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            pytest.fail("the connection stayed open for the whole trickled head")
    assert time.monotonic() - started < 4


def test_upload_slots_per_client():
    slots = UploadSlots(2)
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(APIError) as refused, slots.hold("a"):
            pass
        assert refused.value.status == 429
        with slots.hold("b"):  # another client has its own slots
            pass
    with slots.hold("a"), slots.hold("a"):  # all given back
        pass
