"""Shared, session-scoped fixtures: real registries and offline base images.

Expensive things (a registry process, a busybox image, a Debian rootfs) are made once
per session and shared; tests that change them make their own. The Debian rootfs is
also cached across sessions in ``~/.cache/dockyard-test``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dockyard.runtime.mounts import remove_tree
from tests.support.listening import ATTEMPTS, PORT_TAKEN, free_port, wait_listening


def wait_for_http(
    url: str, timeout: float = 60.0, ok=(200, 401), process: subprocess.Popen | None = None
) -> None:
    """Poll ``url`` until it answers with one of ``ok`` (a server we just started, as
    ``process``: its end ends the wait). A loaded 2-core CI machine may take many seconds
    to start a Python server."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=5.0).status_code in ok:
                return
        except httpx.TransportError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server of {url} exited ({process.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up within {timeout}s")
        time.sleep(0.05)


def need(*tools: str) -> None:
    """Skip outside CI when a peer tool is missing; in CI a missing tool is a failure."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI machine lacks {', '.join(missing)}: .ci/run must install it")
        pytest.skip(f"needs {', '.join(missing)}")


@dataclass
class Registry:
    """A running CNCF distribution registry (Debian's docker-registry) on loopback."""

    host: str  # "127.0.0.1:PORT"
    storage: Path
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def start_docker_registry(workdir: Path, auth_yaml: str = "") -> Registry:
    """docker-registry on a free port (another one if a process took it before the
    registry bound it), once it answers."""
    need("docker-registry")
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    for _ in range(ATTEMPTS):
        port = free_port()
        config.write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '127.0.0.1:{port}'}}\n" + auth_yaml
        )
        log = open(workdir / "registry.log", "wb")  # noqa: SIM115 - lives as long as the process
        # docker-registry reads REGISTRY_* variables as config overrides (REGISTRY_AUTH_FILE!).
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=log, env=env
        )
        if not wait_listening(proc, port):  # it ended: the port taken first?
            log.close()
            if PORT_TAKEN in (workdir / "registry.log").read_bytes():
                continue
            raise RuntimeError(f"docker-registry exited:\n{(workdir / 'registry.log').read_text()}")
        wait_for_http(f"http://127.0.0.1:{port}/v2/", process=proc)
        return Registry(f"127.0.0.1:{port}", storage, proc)
    raise RuntimeError(
        f"docker-registry found no free port:\n{(workdir / 'registry.log').read_text()}"
    )


def stop(registry: Registry) -> None:
    registry.process.terminate()
    try:
        registry.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        registry.process.kill()


@pytest.fixture(scope="session")
def docker_registry(tmp_path_factory) -> Iterator[Registry]:
    """One anonymous docker-registry for the whole session; use unique repo names."""
    registry = start_docker_registry(tmp_path_factory.mktemp("docker-registry"))
    yield registry
    stop(registry)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> Path:
    """A minimal rootfs: static busybox as /bin/sh plus the usual top-level dirs."""
    need("busybox")
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    for d in ("bin", "etc", "tmp", "root", "usr/bin", "var", "dev", "proc", "sys"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    shutil.copy2(busybox, root / "bin/busybox")
    for applet in ("sh", "ls", "cat", "echo", "true"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    )
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return root


@pytest.fixture
def settled_files(monkeypatch) -> None:
    """Build contexts are walked as if a second after their files were written, so no
    file is racily clean (see :func:`dockyard.builder.context.racy`) however fast a test
    writes and builds: a test of the stat cache sees what a user's build sees."""
    from dockyard.builder import context

    monkeypatch.setattr(context, "file_clock", lambda: time.time_ns() + 10**9)


@pytest.fixture
def store_root(tmp_path) -> Path:
    """An empty dockyard store for one test."""
    root = tmp_path / "store"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory, busybox_rootfs) -> Path:
    """An OCI layout dir ``<dir>:latest`` holding a busybox image, made by umoci (not by us),
    so it is also an independent fixture for readers."""
    need("umoci")
    layout = tmp_path_factory.mktemp("busybox-layout") / "oci"
    run = lambda *a: subprocess.run(["umoci", *a], check=True, capture_output=True)  # noqa: E731
    run("init", "--layout", str(layout))
    run("new", "--image", f"{layout}:latest")
    run("insert", "--image", f"{layout}:latest", str(busybox_rootfs), "/")
    run(
        "config",
        "--image",
        f"{layout}:latest",
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    )
    return layout


@pytest.fixture(scope="session")
def busybox_ref(docker_registry, busybox_layout) -> str:
    """``HOST/fixtures/busybox:latest`` in the session registry, pushed by skopeo."""
    need("skopeo")
    ref = f"{docker_registry.host}/fixtures/busybox:latest"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            f"oci:{busybox_layout}:latest",
            f"docker://{ref}",
        ],
        check=True,
        capture_output=True,
    )
    return ref


DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("DOCKYARD_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_REF = f"localhost/fixtures/debian:{DEBIAN_SUITE}"


def fixture_cache_dir() -> Path:
    """Where fixtures too slow to remake every session are kept between sessions."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dockyard-test"


def _debootstrap(tarball: Path, workdir: Path) -> None:
    """Make a minbase Debian rootfs with debootstrap and save it as ``tarball``.

    An unreachable mirror skips the test (fails it in CI); any other failure fails it.
    """
    release = f"{DEBIAN_MIRROR}/dists/{DEBIAN_SUITE}/Release"
    try:
        httpx.head(release, timeout=10.0, follow_redirects=True).raise_for_status()
    except httpx.HTTPError as e:
        reason = f"Debian mirror unreachable ({release}: {e})"
        if os.environ.get("CI"):
            pytest.fail(f"CI machine: {reason}")
        pytest.skip(reason)
    target = workdir / "rootfs"
    try:
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(target), DEBIAN_MIRROR],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            pytest.fail(f"debootstrap exited {result.returncode}:\n{tail}")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_name(f".{tarball.name}.{os.getpid()}")
        # Not kept: what the kernel provides, and apt's downloads and indexes (~90 MB).
        excluded = (
            "dev/*",
            "proc/*",
            "sys/*",
            "var/cache/apt/archives/*.deb",
            "var/lib/apt/lists/deb.*",
        )
        excludes = [f"--exclude=./{pattern}" for pattern in excluded]
        _tar("--create", "--file", str(partial), "--directory", str(target), *excludes, ".")
        partial.rename(tarball)
    finally:
        remove_tree(target)  # debootstrap's /proc and /sys mounts included


def _tar(*args: str) -> None:
    """GNU tar, keeping owners by number and extended attributes (file capabilities)."""
    subprocess.run(["tar", "--numeric-owner", "--xattrs", *args], check=True, capture_output=True)


@pytest.fixture(scope="session")
def debian_rootfs(tmp_path_factory) -> Path:
    """A Debian bookworm rootfs from ``debootstrap --variant=minbase``: a real toolchain
    (bash, coreutils, perl, dpkg, tar, gzip) for pipelines. Only the first session on a
    machine runs debootstrap (minutes, needs the mirror); later ones unpack its tarball."""
    need("debootstrap", "tar")
    tarball = fixture_cache_dir() / f"debian-{DEBIAN_SUITE}-minbase.tar"
    if not tarball.is_file():
        _debootstrap(tarball, tmp_path_factory.mktemp("debootstrap"))
    root = tmp_path_factory.mktemp("debian") / "rootfs"
    root.mkdir()
    _tar("--extract", "--file", str(tarball), "--directory", str(root))
    return root


@pytest.fixture
def debian_ref(dockyard, debian_rootfs) -> str:
    """The Debian rootfs as a one-layer image in the test's store (``dockyard import``)."""
    dockyard("import", "--compression", "none", str(debian_rootfs), DEBIAN_REF)
    return DEBIAN_REF


@dataclass
class Dockyard:
    """Runs the ``dockyard`` command line on one store root, as a user would."""

    root: Path

    def __call__(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None, **kw
    ) -> subprocess.CompletedProcess:
        env = {**os.environ, **(env or {}), "DOCKYARD_ROOT": str(self.root)}
        env.pop("DOCKYARD_DEBUG", None)
        result = subprocess.run(
            [sys.executable, "-m", "dockyard.cli.main", *args],
            capture_output=True,
            env=env,
            **kw,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"dockyard {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stderr.decode(errors='replace')}"
            )
        return result


@pytest.fixture
def dockyard(store_root) -> Dockyard:
    return Dockyard(store_root)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server (Debian's) for the session, on a loopback port, run as the
    ``postgres`` user from a temp dir; yields its URL without a database name."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not binaries or os.geteuid() != 0:
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail("CI machine lacks Debian's postgresql: scripts/install-deps installs it")
        pytest.skip("needs Debian's postgresql, and root to run it as the postgres user")
    bin_dir = binaries[-1].parent
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="dockyard-pg-"))
    shutil.chown(base, "postgres", "postgres")

    def as_postgres(*command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, cwd=base
        )

    as_postgres(str(bin_dir / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "dockyard")
    for _ in range(ATTEMPTS):  # another port if another process bound the one chosen first
        port = free_port()
        logged = (base / "log").stat().st_size if (base / "log").exists() else 0
        options = f"-k {base} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
        try:
            as_postgres(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(base / "data"),
                "-o",
                options,
                "-w",
                "-l",
                str(base / "log"),
                "start",
            )
            break
        except subprocess.CalledProcessError:
            if b"could not bind" not in (base / "log").read_bytes()[logged:]:
                raise
    else:
        raise RuntimeError(f"PostgreSQL found no free port:\n{(base / 'log').read_text()}")
    try:
        yield f"postgresql://dockyard@127.0.0.1:{port}"
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server) -> str:
    """A new, empty database on the session's PostgreSQL server: its URL."""
    import uuid

    import psycopg

    name = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server + "/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """One SeaweedFS S3 gateway on loopback for the session (tests/e2e/seaweed.py); each
    test takes a prefix of its own with ``seaweed.storage_args()``."""
    from tests.e2e.seaweed import start_seaweed

    need("weed")
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()
