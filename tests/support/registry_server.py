"""Helpers for the registry server's end-to-end and security tests: start and stop
``dockyard registry serve`` as a subprocess, run skopeo/podman/buildah on it, fake
upstream registries."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.conftest import need
from tests.support.http import serve_in_thread
from tests.support.waiting import PATIENCE


@dataclass
class Server:
    """A running ``dockyard registry serve`` on 127.0.0.1; port 0 (a new server) lets the
    kernel choose a free port, which :meth:`start` reads from uvicorn's start-up line."""

    root: Path
    args: tuple[str, ...]
    port: int
    log: Path
    tls: bool = False
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self, timeout: float = PATIENCE) -> Server:
        """Start the server (again on its port, once it has one) and return once it
        answers: no port is chosen first and bound later, when another process may have
        taken it."""
        argv = [
            sys.executable,
            "-m",
            "dockyard.cli.main",
            "registry",
            "serve",
            "--addr",
            self.host,
            "--root",
            str(self.root),
            *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if k != "DOCKYARD_DEBUG"}
        env.update(self.env or {})
        logged = self.log.stat().st_size if self.log.exists() else 0  # earlier runs' lines
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        wanted = self.port
        while True:
            bound = self._bound_port(logged)  # this process's, not another's on the port
            if bound and wanted in (0, bound):
                self.port = bound
                try:
                    r = httpx.get(f"{self.url}/v2/", timeout=5.0, verify=False)
                    if r.status_code in (200, 401):
                        return self
                except httpx.TransportError:
                    pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"registry did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def _bound_port(self, logged: int) -> int:
        """The port uvicorn says it listens on in this run's log lines, 0 until it says."""
        with open(self.log, "rb") as log:
            log.seek(logged)
            found = re.search(rb"Uvicorn running on https?://127\.0\.0\.1:(\d+)", log.read())
        return int(found[1]) if found else 0

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(workdir: Path, *args: str, tls: bool = False, env=None) -> Server:
    root = workdir / "root"
    workdir.mkdir(parents=True, exist_ok=True)
    return Server(root, args, 0, workdir / "server.log", tls, env).start()


def run(
    *argv: str, check: bool = True, env=None, timeout: float = 300
) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
    return result


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    need("skopeo")
    return run("skopeo", *args, check=check)


def copy(src: str, dst: str, *extra: str) -> None:
    skopeo("copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, src, dst)


class Containers:
    """podman or buildah on its own short-pathed storage (runroot must be < 50 chars)."""

    def __init__(self, tool: str, registries_conf: Path | None = None):
        need(tool)
        self.tool = tool
        self.dir = Path(tempfile.mkdtemp(prefix="ct", dir="/tmp"))
        self.env = {**os.environ}
        if registries_conf is not None:
            self.env["CONTAINERS_REGISTRIES_CONF"] = str(registries_conf)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(
            self.tool,
            "--root",
            str(self.dir / "r"),
            "--runroot",
            str(self.dir / "rr"),
            "--storage-driver",
            "vfs",
            *args,
            check=check,
            env=self.env,
        )

    def close(self) -> None:
        self(
            *(["rmi", "--all", "--force"] if self.tool == "podman" else ["rmi", "--all"]),
            check=False,
        )
        subprocess.run(["umount", "-R", str(self.dir / "r")], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def manifest_digest(url: str, name: str, ref: str, **kw) -> str:
    r = httpx.get(
        f"{url}/v2/{name}/manifests/{ref}",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.index.v1+json, "
            "application/vnd.docker.distribution.manifest.list.v2+json"
        },
        verify=False,
        **kw,
    )
    r.raise_for_status()
    return r.headers["docker-content-digest"]


class FakeRegistry:
    """A distribution API on 127.0.0.1 serving ``images`` (``repo -> (tag, manifest,
    blobs)``) from memory, and noting every request it gets (method, path, the
    ``Authorization`` header). ``lie_about_blobs`` makes it claim every blob and send
    wrong bytes for those it lacks; ``basic_auth`` makes it demand a login."""

    def __init__(self, images=None, *, lie_about_blobs: bool = False, basic_auth: bool = False):
        self.images = images or {}
        self.lie_about_blobs = lie_about_blobs
        self.basic_auth = basic_auth
        self.requests: list[tuple[str, str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                fake._answer(self, body=True)

            def do_HEAD(self):
                fake._answer(self, body=False)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serve_in_thread(self.server)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _find(self, path: str) -> tuple[str, bytes] | None:
        """(content type, bytes) for a manifest or blob path."""
        for repo, (tag, manifest, blobs) in self.images.items():
            for kind in ("manifests", "blobs"):
                prefix = f"/v2/{repo}/{kind}/"
                if not path.startswith(prefix):
                    continue
                ref = path[len(prefix) :]
                if kind == "manifests" and ref in (tag, sha256_of(manifest), sha512_of(manifest)):
                    return "application/vnd.oci.image.manifest.v1+json", manifest
                if kind == "blobs" and ref in blobs:
                    return "application/octet-stream", blobs[ref]
        if self.lie_about_blobs and "/blobs/sha256:" in path:
            return "application/octet-stream", b"not what you asked for" * 10
        return None

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?", 1)[0]
        self.requests.append((handler.command, path, handler.headers.get("Authorization")))
        if self.basic_auth and path != "/v2/" and not handler.headers.get("Authorization"):
            status, headers, data = 401, {"WWW-Authenticate": 'Basic realm="fake"'}, b"{}"
        elif path == "/v2/":
            status, headers, data = 200, {}, b"{}"
        elif (found := self._find(path)) is not None:
            media_type, data = found
            headers = {"Content-Type": media_type, "Docker-Content-Digest": sha256_of(data)}
            status = 200
        else:
            status, headers, data = 404, {"Content-Type": "application/json"}, b"{}"
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512_of(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def fake_image(layer: bytes) -> tuple[bytes, dict[str, bytes]]:
    """A one-layer OCI image: (manifest bytes, {digest: blob})."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_of(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256_of(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return manifest, {sha256_of(config): config, sha256_of(layer): layer}
