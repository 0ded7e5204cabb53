"""Slow and greedy clients against a real ``dockyard registry serve`` on loopback:
a request head or body trickled a byte at a time (slowloris) is cut off after the
configured time, and one client address gets only so many uploads at once.

The trickling below is the attack itself (a byte, then a pause); the tests wait on the
server's answer or EOF, never sleep to time it.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.registry_server import sha256_of as sha
from tests.support.registry_server import start_server
from tests.support.waiting import PATIENCE, wait_until

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
BODY_MIN_RATE = 1000  # bytes/s
TRICKLE_PAUSE = 0.2  # seconds between the attacker's bytes
CUT_OFF_BY = 6.0  # seconds: the limits above plus scheduling slack on a busy machine


def serve(workdir: Path, **settings):
    config = workdir / "registry.toml"
    workdir.mkdir(parents=True, exist_ok=True)
    config.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
    return start_server(workdir, "--config", str(config))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = serve(
        tmp_path_factory.mktemp("slow"),
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        body_min_rate=BODY_MIN_RATE,
    )
    yield server
    server.stop()


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=CUT_OFF_BY * 2)


def trickle(sock: socket.socket, data: bytes, until: float) -> tuple[int, bytes]:
    """Send ``data`` a byte per pause until the server answers or closes, or ``until``
    passes; return the bytes sent and what the server said (b"" for a bare close)."""
    sock.settimeout(TRICKLE_PAUSE)
    sent = 0
    while time.monotonic() < until:
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            pass
        else:
            return sent, answer + read_rest(sock) if answer else b""
        if sent < len(data):
            try:
                sock.send(data[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                return sent, b""
            sent += 1
    raise AssertionError(f"still connected after {sent} trickled bytes")


def read_rest(sock: socket.socket) -> bytes:
    sock.settimeout(CUT_OFF_BY)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def start_upload(server, name: str = "slow/blob") -> str:
    r = httpx.post(f"{server.url}/v2/{name}/blobs/uploads/")
    assert r.status_code == 202, r.text
    return r.headers["location"]


# -- the request head ------------------------------------------------------------------


def test_trickled_request_head_is_cut_off(server):
    head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    started = time.monotonic()
    with connect(server) as sock:
        sent, answer = trickle(sock, head, started + CUT_OFF_BY)
    assert answer == b"", answer  # closed, nothing answered
    assert sent < len(head)
    assert time.monotonic() - started < CUT_OFF_BY


def test_silent_connection_is_closed(server):
    started = time.monotonic()
    with connect(server) as sock:
        sent, answer = trickle(sock, b"", started + CUT_OFF_BY)
    assert (sent, answer) == (0, b"")


def test_next_request_on_a_kept_alive_connection_has_the_same_deadline(server):
    with connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"{}"):  # the whole first answer, its body is {}
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        started = time.monotonic()
        _, answer = trickle(sock, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" * 20, started + 10)
    assert answer == b""
    assert time.monotonic() - started < CUT_OFF_BY


def test_prompt_requests_are_unaffected(server):
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            assert client.get("/v2/").status_code == 200


# -- the request body ------------------------------------------------------------------


BODY = b"x" * 4000


def request_line_and_header(server, kind: str) -> tuple[str, bytes]:
    """The request line and an extra header of each request that sends a body."""
    if kind == "patch":
        return f"PATCH {start_upload(server)} HTTP/1.1", b"Content-Type: application/octet-stream"
    if kind == "put":
        return f"PUT {start_upload(server)}?digest={sha(BODY)} HTTP/1.1", b""
    if kind == "monolithic-post":
        return f"POST /v2/slow/blob/blobs/uploads/?digest={sha(BODY)} HTTP/1.1", b""
    manifest_type = b"application/vnd.oci.image.manifest.v1+json"
    return "PUT /v2/slow/blob/manifests/latest HTTP/1.1", b"Content-Type: " + manifest_type


@pytest.mark.parametrize("kind", ["patch", "put", "monolithic-post", "manifest"])
@pytest.mark.parametrize("how", ["trickled", "stalled"])
def test_slow_body_is_cut_off_with_408(server, kind, how):
    line, extra = request_line_and_header(server, kind)
    body = BODY
    head = f"{line}\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
    head += (extra + b"\r\n" if extra else b"") + b"\r\n"
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(head + body[:10])
        sent, answer = trickle(sock, body[10:] if how == "trickled" else b"", started + 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"REQUEST_TIMEOUT" in answer
    assert time.monotonic() - started < CUT_OFF_BY
    assert sent < len(body)


def test_slow_upload_keeps_nothing_of_a_monolithic_blob(server):
    body = b"y" * 4000
    digest = sha(body)
    head = (
        f"POST /v2/slow/kept/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with connect(server) as sock:
        sock.sendall(head + body[:100])
        _, answer = trickle(sock, body[100:], time.monotonic() + 10)
    assert answer.startswith(b"HTTP/1.1 408")
    assert not (server.root / "blobs" / "sha256" / digest.split(":")[1]).exists()
    assert httpx.head(f"{server.url}/v2/slow/kept/blobs/{digest}").status_code == 404


def test_a_fast_big_upload_passes_the_body_deadline(server):
    data = b"z" * (16 << 20)
    r = httpx.post(
        f"{server.url}/v2/slow/big/blobs/uploads/?digest={sha(data)}", content=data, timeout=60
    )
    assert r.status_code == 201, r.text


# -- uploads per client ----------------------------------------------------------------


def test_uploads_per_client_are_capped(tmp_path):
    server = serve(tmp_path / "cap", max_uploads_per_client=2, body_timeout=60)
    try:
        first, second, third = (start_upload(server, "cap/blob") for _ in range(3))
        held = []
        for location in (first, second):  # two uploads in flight: bodies still coming
            sock = connect(server)
            sock.sendall(
                f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
                + b"a" * 1000
            )
            held.append(sock)
        wait_until(  # the server has read the held requests' heads: their slots are taken
            lambda: httpx.post(f"{server.url}/v2/cap/blob/blobs/uploads/").status_code == 429,
            "the held uploads to take their slots",
        )
        for refused in (
            httpx.patch(f"{server.url}{third}", content=b"b" * 1000),
            httpx.post(f"{server.url}/v2/cap/blob/blobs/uploads/"),
        ):
            assert refused.status_code == 429, refused.text
            assert refused.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
            assert refused.headers["retry-after"] == "1"
        assert httpx.get(f"{server.url}/v2/").status_code == 200  # other requests still go
        for sock in held:  # the held uploads end: their slots come back
            sock.close()
        deadline = time.monotonic() + PATIENCE
        while True:
            r = httpx.patch(f"{server.url}{third}", content=b"b" * 1000)
            if r.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # polling for the server to see the closed connections
        assert r.status_code == 202, r.text
    finally:
        server.stop()
