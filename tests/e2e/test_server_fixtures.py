"""Helpers for the registry server's end-to-end tests (no tests here): start and stop
``dockyard registry serve`` as a subprocess, run skopeo/podman/buildah on it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port, need


@dataclass
class Server:
    """A running ``dockyard registry serve`` on 127.0.0.1."""

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

    def start(self, timeout: float = 20.0) -> Server:
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
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = httpx.get(f"{self.url}/v2/", timeout=1.0, verify=False)
                if r.status_code in (200, 401):
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"registry did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

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
    return Server(root, args, free_port(), workdir / "server.log", tls, env).start()


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
