"""dockyard's registry server vs docker-registry (CNCF distribution), same run, same client.

- skopeo pushing / pulling a 240 MB image (4 x 60 MB incompressible layers) to / from
  each registry (goal: ratio <= 1.0);
- a first pull through dockyard's mirror vs straight from the upstream docker-registry
  (goal <= 1.2: the mirror streams while it caches), and a second, cached pull (<= 1.0);
- 50 concurrent small-manifest GETs (``ab -c 50 -k``): p50 / p99 latency, ours beside
  docker-registry's.

Registry start-up is outside every timed action. Run as root:
``python3 bench/bench_registry.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_transfer import make_image
from common import docker_registry, forget_skopeo_blob_cache, free_port, report, reset_dir


@contextmanager
def dockyard_registry(root: Path, *args: str) -> Iterator[str]:
    """``dockyard registry serve`` on a free loopback port; yields ``host:port``."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dockyard.cli.main",
            "registry",
            "serve",
            "--addr",
            f"127.0.0.1:{port}",
            "--root",
            str(root),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def paired(ours, peer, prepare, repeat: int) -> tuple[float, float]:
    """Median wall times of two actions, run alternately (so drift hits both alike)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for action, out in ((ours, times[0]), (peer, times[1])):
            prepare()
            begin = time.perf_counter()
            action()
            out.append(time.perf_counter() - begin)
    return tuple(sorted(t)[len(t) // 2] for t in times)  # type: ignore[return-value]


def settle() -> None:
    """Write back what the last run left dirty, outside the timed part."""
    os.sync()


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", "copy", "-q", *args], check=True, stdout=subprocess.DEVNULL)


def pull(ref: str, dest: Path) -> None:
    skopeo("--src-tls-verify=false", f"docker://{ref}", f"dir:{dest}")


def latency(
    url: str, accept: str, requests: int = 3000, concurrency: int = 50
) -> tuple[float, ...]:
    """p50 and p99 in ms, and requests/s, of ``ab -k`` GETs of ``url``."""
    out = subprocess.run(
        [
            "ab",
            "-q",
            "-k",
            "-n",
            str(requests),
            "-c",
            str(concurrency),
            "-H",
            f"Accept: {accept}",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if (failed and int(failed.group(1))) or non2xx:
        raise RuntimeError(f"ab saw failures against {url}:\n{out}")
    p50 = float(re.search(r"^\s+50%\s+(\d+)", out, re.M).group(1))
    p99 = float(re.search(r"^\s+99%\s+(\d+)", out, re.M).group(1))
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    return p50, p99, rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        work = Path(tmp)
        store = work / "store"
        name = "bench.local/big:1"
        make_image(work, store, name)
        source = f"oci:{store}:{name}"
        dest = work / "pulled"
        rows = []
        os.environ.pop("REGISTRY_AUTH_FILE", None)

        # -- push: an empty registry for every run -------------------------------------
        push_times: tuple[list[float], list[float]] = ([], [])
        for i in range(args.repeat):
            for start, out in (
                (lambda i=i: dockyard_registry(work / f"push-root-{i}"), push_times[0]),
                (docker_registry, push_times[1]),
            ):
                with start() as host:
                    forget_skopeo_blob_cache()
                    settle()
                    begin = time.perf_counter()
                    skopeo("--dest-tls-verify=false", source, f"docker://{host}/b/img:1")
                    out.append(time.perf_counter() - begin)
                reset_dir(work / f"push-root-{i}")
        ours, peer = (sorted(t)[len(t) // 2] for t in push_times)
        rows.append(("skopeo push 4x60 MB", ours, peer))

        # -- pull, direct and through the mirror -----------------------------------------
        with docker_registry() as upstream, dockyard_registry(work / "ours") as host:
            skopeo("--dest-tls-verify=false", source, f"docker://{upstream}/b/img:1")
            skopeo("--dest-tls-verify=false", source, f"docker://{host}/b/img:1")
            prepare = lambda: (reset_dir(dest), forget_skopeo_blob_cache(), settle())  # noqa: E731
            ours, peer = paired(
                lambda: pull(f"{host}/b/img:1", dest),
                lambda: pull(f"{upstream}/b/img:1", dest),
                prepare,
                args.repeat,
            )
            rows.append(("skopeo pull 4x60 MB", ours, peer))

            first, direct, second, direct2 = [], [], [], []
            for i in range(args.repeat):
                mirror_root = work / f"mirror-{i}"
                with dockyard_registry(mirror_root, "--upstream", f"up=http://{upstream}") as m:
                    for ref, out in (
                        (f"{m}/up/b/img:1", first),
                        (f"{upstream}/b/img:1", direct),
                        (f"{m}/up/b/img:1", second),
                        (f"{upstream}/b/img:1", direct2),
                    ):
                        prepare()
                        begin = time.perf_counter()
                        pull(ref, dest)
                        out.append(time.perf_counter() - begin)
                reset_dir(mirror_root)
            med = lambda t: sorted(t)[len(t) // 2]  # noqa: E731
            rows.append(("mirror: first pull", med(first), med(direct)))
            rows.append(("mirror: second pull", med(second), med(direct2)))
            report("Registry server (median wall time; peer = docker-registry)", rows[:2], 1.0)
            report("Pull-through mirror (peer = straight from upstream)", rows[2:3], 1.2)
            report("", rows[3:], 1.0)

            # -- 50 concurrent manifest GETs ---------------------------------------------
            accept = "application/vnd.oci.image.manifest.v1+json"
            ours = latency(f"http://{host}/v2/b/img/manifests/1", accept)
            peer = latency(f"http://{upstream}/v2/b/img/manifests/1", accept)
            print("\n50 concurrent manifest GETs (ab -k, 3000 requests)")
            print(f"{'':<16}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>10}")
            for label, (p50, p99, rps) in (("dockyard", ours), ("docker-registry", peer)):
                print(f"{label:<16}{p50:>9.0f}{p99:>9.0f}{rps:>10.0f}")


if __name__ == "__main__":
    main()
