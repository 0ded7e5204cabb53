"""Shared helpers for the benchmarks: a throwaway registry, timing, a test image."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _dockyard_script() -> str:
    """The ``dockyard`` console script of the interpreter running the benchmark.

    Not a PATH lookup: version managers put a shell shim first on PATH (pyenv's costs
    ~100 ms per call here), which would be timed as ours; skopeo and podman run direct.
    """
    script = Path(sys.executable).parent / "dockyard"
    return str(script) if script.exists() else shutil.which("dockyard") or "dockyard"


DOCKYARD = _dockyard_script()


def dockyard_env(store: Path, pycache: Path) -> dict[str, str]:
    """The environment for the dockyard CLI: the store at ``store`` and bytecode cached
    under ``pycache``, as for an installed dockyard (pip compiles on install). Some hosts
    set PYTHONDONTWRITEBYTECODE, which would time a compile of every module per call."""
    env = {**os.environ, "DOCKYARD_ROOT": str(store), "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """A temp dir for a benchmark's stores and peers' storage, under ``$BENCH_DIR``
    (default ``~/.cache/dockyard-bench``): on some hosts /tmp is watched (file-event
    monitors) and creating a file there costs 20x more, which would swamp the figures."""
    base = Path(os.environ.get("BENCH_DIR") or Path.home() / ".cache/dockyard-bench")
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=base)


def podman_command(work: Path) -> list[str]:
    """podman on throwaway storage under ``work`` (keep ``work`` short: podman refuses a
    runroot of 50 characters or more), with runc and no systemd, as this host needs."""
    return [
        "podman",
        "--root", str(work / "pr"),
        "--runroot", str(work / "prr"),
        "--runtime", "runc",  # crun fails on this host's hybrid cgroups (PITFALLS)
        "--cgroup-manager", "cgroupfs",
        "--events-backend", "file",
        "--storage-driver", "overlay",
    ]  # fmt: skip


def container_bench(prefix: str) -> tuple[Path, list[str], Path, dict[str, str]]:
    """Checks and set-up shared by the container benchmarks: root and the tools, a short
    work dir (podman's runroot limit), podman on it, and the env for the dockyard CLI
    (store and bytecode cache in the work dir)."""
    if os.geteuid() != 0:
        sys.exit("run as root: containers need it")
    for tool in ("runc", "podman", "umoci", "busybox"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool}")
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    store = work / "store"
    return work, podman_command(work), store, dockyard_env(store, work / "pyc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def docker_registry(pids: list[int] | None = None) -> Iterator[str]:
    """A fresh docker-registry on loopback with empty storage; yields ``host:port``
    (its process id appended to ``pids``, for :func:`cpu_seconds`)."""
    with scratch_dir("registry-") as tmp:
        port = free_port()
        config = Path(tmp) / "config.yml"
        config.write_text(
            "version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {tmp}/data}}}}\n"
            f"http: {{addr: '127.0.0.1:{port}'}}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        if pids is not None:
            pids.append(proc.pid)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process ``pid`` has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User plus system CPU time of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(*argv: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)


def timed(
    action: Callable[[], None], prepare: Callable[[], None] | None = None, repeat: int = 3
) -> float:
    """Median wall time of ``action`` over ``repeat`` runs, ``prepare`` untimed before each."""
    times = []
    for _ in range(repeat):
        if prepare:
            prepare()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_pair(
    ours: Callable[[], None],
    theirs: Callable[[], None],
    prepare: Callable[[], None] | None = None,
    repeat: int = 3,
) -> tuple[float, float, tuple[float, float]]:
    """Median wall times of ``ours`` and ``theirs`` run alternately (``prepare`` untimed
    before each run), and the range of the per-pair ratios. Alternating puts both under
    the same load on a shared machine, so the ratio is fairer than two separate medians."""
    mine, peer = [], []
    for _ in range(repeat):
        for action, times in ((ours, mine), (theirs, peer)):
            if prepare:
                prepare()
            start = time.perf_counter()
            action()
            times.append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(mine, peer, strict=True)]
    return statistics.median(mine), statistics.median(peer), (min(ratios), max(ratios))


def forget_skopeo_blob_cache() -> None:
    """skopeo mounts blobs it saw before instead of uploading (PITFALLS): forget them."""
    for path in (
        Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"),
        Path.home() / ".local/share/containers/cache/blob-info-cache-v1.boltdb",
    ):
        path.unlink(missing_ok=True)


def reset_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def report(title: str, rows: list[tuple], goal: float | None = None) -> None:
    """Print ``(case, ours, peer)`` rows with their ratio; a row may carry a fourth item,
    the ``(low, high)`` range of per-pair ratios from :func:`timed_pair`, or a fifth, the
    row's own goal."""
    print(f"\n{title}")
    print(f"{'case':<28}{'dockyard':>12}{'peer':>12}{'ratio':>9}{'pairs':>14}")
    for case, ours, peer, *rest in rows:
        spread = f"{rest[0][0]:.2f}-{rest[0][1]:.2f}" if rest else ""
        row_goal = rest[1] if len(rest) > 1 else goal
        flag = (
            "" if row_goal is None else ("  ok" if ours / peer <= row_goal else f"  > {row_goal}")
        )
        print(f"{case:<28}{ours:>11.3f}s{peer:>11.3f}s{ours / peer:>9.2f}{spread:>14}{flag}")
