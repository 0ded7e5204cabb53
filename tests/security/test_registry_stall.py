"""A registry that accepts a connection and then stalls must not hang the client.

The server here answers nothing at all, or the headers and part of the body, and then
never another byte. Each try fails after the stall timeout, replayable requests and
downloads are tried again, and after the last try the error says what happened.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from dockyard.errors import RegistryError
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.registry.client import RegistryClient, RetryPolicy

TIMEOUT_VAR = "DOCKYARD_REGISTRY_TIMEOUT"  # the documented setting, 30 s if unset
BLOB = b"x" * 10_000
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class StallingRegistry:
    """A loopback server that reads each request and answers with ``prefix`` (maybe
    nothing), then stalls until closed. It records every request line."""

    def __init__(self, prefix: bytes):
        self.prefix = prefix
        self.requests: list[str] = []  # request lines
        self.ranges: list[str | None] = []  # their Range headers
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._connections: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(conn)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    break
                head += data
            if head:
                line, *fields = head.decode().split("\r\n")
                self.requests.append(line)
                headers = dict(f.lower().split(": ", 1) for f in fields if ": " in f)
                self.ranges.append(headers.get("range"))
                conn.sendall(self.prefix)
            # and then nothing: the connection stays open, silent, until close()

    def close(self) -> None:
        self._closed.set()
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in our thread
        self._listener.close()
        for conn in self._connections:
            conn.close()
        self._thread.join(timeout=10)


@pytest.fixture
def stalling() -> Iterator[type[StallingRegistry]]:
    servers: list[StallingRegistry] = []

    def start(prefix: bytes = b"") -> StallingRegistry:
        servers.append(StallingRegistry(prefix))
        return servers[-1]

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def fast_client(host: str) -> RegistryClient:
    return RegistryClient(
        host, timeout=0.5, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    )


def test_a_registry_that_never_answers_fails_after_the_retries(stalling):
    server = stalling()
    with fast_client(server.host) as client, pytest.raises(RegistryError) as error:
        client.get_manifest("org/app", "1")
    assert str(error.value) == (
        f"registry {server.host}: stalled: no data for 0.5s (${TIMEOUT_VAR}) (3 tries): org/app:1"
    )
    assert server.requests == ["GET /v2/org/app/manifests/1 HTTP/1.1"] * 3


def test_a_registry_that_stalls_mid_body_fails_after_the_retries(stalling):
    headers = (
        "HTTP/1.1 200 OK\r\n"
        f"Content-Type: {mt.OCI_MANIFEST}\r\n"
        "Content-Length: 1000\r\n\r\n"
        '{"schemaVersion": 2, '
    )
    server = stalling(headers.encode())
    with fast_client(server.host) as client, pytest.raises(RegistryError, match="stalled"):
        client.get_manifest("org/app", "1")
    assert len(server.requests) == 3


def test_a_blob_download_that_stalls_resumes_then_gives_up(stalling):
    headers = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BLOB)}\r\n\r\n".encode()
    server = stalling(headers + BLOB[:100])
    desc = Descriptor("application/octet-stream", BLOB_DIGEST, len(BLOB))
    with (
        fast_client(server.host) as client,
        pytest.raises(RegistryError) as error,
        client.open_blob("org/app", desc) as reader,
    ):
        reader.read()
    assert str(error.value) == (
        f"registry {server.host}: reading org/app@{BLOB_DIGEST}: "
        f"stalled: no data for 0.5s (${TIMEOUT_VAR}) (3 tries)"
    )
    # the first try, then two asking for the rest from the bytes already received
    assert server.requests == [f"GET /v2/org/app/blobs/{BLOB_DIGEST} HTTP/1.1"] * 3
    assert server.ranges == [None, "bytes=100-", "bytes=100-"]


def test_the_default_stall_timeout_is_short_and_the_variable_sets_it(monkeypatch):
    monkeypatch.delenv(TIMEOUT_VAR, raising=False)
    with RegistryClient("127.0.0.1:1") as client:
        assert client._http.timeout.read == 30
    monkeypatch.setenv(TIMEOUT_VAR, "2.5")
    with RegistryClient("127.0.0.1:1") as client:
        assert client._http.timeout.read == 2.5
    for bad in ("soon", "0", "-1", "nan", "inf"):
        monkeypatch.setenv(TIMEOUT_VAR, bad)
        with pytest.raises(RegistryError, match=f"^{TIMEOUT_VAR}='{bad}': expected a number"):
            RegistryClient("127.0.0.1:1")


def test_the_cli_gives_up_on_a_stalled_registry_with_one_line(stalling, tmp_path):
    """The user's path: ``$DOCKYARD_REGISTRY_TIMEOUT`` and the default retries. The
    subprocess timeout only catches a client that would hang (as it did, >= 400 s)."""
    server = stalling()
    env = {**os.environ, TIMEOUT_VAR: "0.3", "DOCKYARD_ROOT": str(tmp_path / "store")}
    result = subprocess.run(
        [sys.executable, "-m", "dockyard.cli.main", "manifest", "get", f"{server.host}/a/b:1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"dockyard: error: registry {server.host}: stalled: no data for 0.3s "
        f"(${TIMEOUT_VAR}) (5 tries): a/b:1\n"
    )
    assert len(server.requests) == RetryPolicy().attempts
