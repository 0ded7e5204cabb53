"""dockyard's registry vs docker-registry (CNCF distribution), both on one SeaweedFS S3
gateway: skopeo push and pull of the 240 MB bench image (4 x 60 MB incompressible layers)
through each, same run, same client (goal: ratio <= 1.0 each); and the peak memory of
a dockyard replica taking a 1 GB layer in one streamed ``PATCH`` (goal < 100 MB).

distribution uses its ``s3`` storage driver (``regionendpoint``, ``forcepathstyle``,
``secure: false``, ``v4auth``); dockyard ``--storage s3://…``. Every push goes to an
empty prefix of the bucket. Pulls are timed twice: with both registries carrying the
bytes (distribution's ``redirect: {disable: true}``, dockyard's default), and with both
sending clients to pre-signed URLs (distribution's default, dockyard ``--redirect``).
Start-up of the store and the registries is outside every timed action. Run as root:
``python3 bench/bench_registry_s3.py [--repeat N] [--memory-only]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_registry import dockyard_registry, pull, settle, skopeo
from bench_transfer import make_image
from common import forget_skopeo_blob_cache, free_port, report, reset_dir, timed_pair

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: its tests
from tests.e2e.seaweed import S3_ENV as KEYS
from tests.e2e.seaweed import start_seaweed

BUCKET = "bench"


def _wait(url: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


@contextmanager
def seaweed(work: Path) -> Iterator[str]:
    """The tests' SeaweedFS (``tests/e2e/seaweed.py``) with the bucket made; yields the S3
    endpoint. Volumes of SeaweedFS's default size: a 1 GB layer is pushed again and again."""
    server = start_seaweed(work / "weed", volume_mb=30_000)
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server.endpoint
    finally:
        server.stop()


@contextmanager
def distribution_s3(work: Path, endpoint: str, root: str, redirect: bool) -> Iterator[str]:
    """``docker-registry`` with its ``s3`` driver on ``BUCKET/root``; yields host:port."""
    port = free_port()
    config = work / f"distribution-{uuid.uuid4().hex[:8]}.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        "storage:\n"
        "  s3:\n"
        f"    accesskey: {KEYS['AWS_ACCESS_KEY_ID']}\n"
        f"    secretkey: {KEYS['AWS_SECRET_ACCESS_KEY']}\n"
        "    region: us-east-1\n"
        f"    regionendpoint: {endpoint}\n"
        f"    bucket: {BUCKET}\n"
        f"    rootdirectory: /{root}\n"
        "    forcepathstyle: true\n"
        "    secure: false\n"
        "    v4auth: true\n"
        f"  redirect: {{disable: {'false' if redirect else 'true'}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    # its s3 driver panics on the environment's AWS_CA_BUNDLE (PITFALLS)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REGISTRY_") and k != "AWS_CA_BUNDLE"
    }
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/v2/", proc, "docker-registry")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def dockyard_s3(work: Path, endpoint: str, root: str, redirect: bool):
    """``dockyard registry serve`` on ``s3://BUCKET/root`` (a context manager)."""
    args = _s3_args(endpoint, root, redirect)
    return dockyard_registry(work / f"local-{uuid.uuid4().hex[:8]}", *args)


def peak_rss_of_upload(work: Path, endpoint: str, size: int = 1 << 30) -> float:
    """Peak resident memory (MB, the kernel's ``VmHWM``) of a dockyard replica on S3
    while it takes a ``size``-byte blob in one streamed ``PATCH``, then ``PUT``."""
    import hashlib

    import httpx

    root = work / f"local-mem-{uuid.uuid4().hex[:8]}"
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    for _ in range(size // len(block)):
        digest.update(block)
    with dockyard_registry(root, *_s3_args(endpoint, "memory", False)) as host:
        pid = next(
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and str(root).encode() in _cmdline(entry)
        )
        base = f"http://{host}/v2/b/mem/blobs/uploads/"
        with httpx.Client(timeout=600) as client:
            started = client.post(base)
            location = httpx.URL(base).join(started.headers["location"])
            chunks = (block for _ in range(size // len(block)))
            patched = client.patch(location, content=chunks)
            patched.raise_for_status()
            done = httpx.URL(base).join(patched.headers["location"])
            client.put(done, params={"digest": f"sha256:{digest.hexdigest()}"}).raise_for_status()
        status = Path(f"/proc/{pid}/status").read_text()
    peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return int(peak.split()[1]) / 1024  # kB


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""


def _s3_args(endpoint: str, root: str, redirect: bool) -> list[str]:
    args = ["--storage", f"s3://{BUCKET}/{root}", "--s3-endpoint", endpoint]
    return [*args, "--s3-region", "us-east-1", *(["--redirect"] if redirect else [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-only", action="store_true", help="only the 1 GB upload")
    args = parser.parse_args()
    os.environ.pop("REGISTRY_AUTH_FILE", None)
    os.environ.pop("AWS_CA_BUNDLE", None)
    os.environ.update(KEYS)

    with tempfile.TemporaryDirectory(prefix="bench-registry-s3-") as tmp:
        work = Path(tmp)
        store = work / "store"
        name = "bench.local/big:1"
        make_image(work, store, name)
        source = f"oci:{store}:{name}"
        dest = work / "pulled"
        rows = []
        with seaweed(work) as endpoint:
            peak = peak_rss_of_upload(work, endpoint)
            print(f"dockyard replica on S3, 1 GB layer upload: peak RSS {peak:.0f} MB (goal < 100)")
            if args.memory_only:
                return
            # -- push: an empty prefix for every run, the two alternating ---------------
            times: tuple[list[float], list[float]] = ([], [])
            for _ in range(args.repeat):
                for start, out in ((dockyard_s3, times[0]), (distribution_s3, times[1])):
                    with start(work, endpoint, f"push-{uuid.uuid4().hex[:8]}", False) as host:
                        forget_skopeo_blob_cache()
                        settle()
                        begin = time.perf_counter()
                        skopeo("--dest-tls-verify=false", source, f"docker://{host}/b/img:1")
                        out.append(time.perf_counter() - begin)
            ratios = [a / b for a, b in zip(*times, strict=True)]
            ours, peer = (statistics.median(t) for t in times)
            rows.append(("skopeo push 4x60 MB", ours, peer, (min(ratios), max(ratios))))

            # -- pull: the bytes through the registry, then redirected to the store ------
            prepare = lambda: (reset_dir(dest), forget_skopeo_blob_cache(), settle())  # noqa: E731
            for redirect, label in ((False, "pull"), (True, "pull, redirect")):
                with (
                    dockyard_s3(work, endpoint, "pull-ours", redirect) as host,
                    distribution_s3(work, endpoint, "pull-peer", redirect) as upstream,
                ):
                    if not redirect:
                        skopeo("--dest-tls-verify=false", source, f"docker://{host}/b/img:1")
                        skopeo("--dest-tls-verify=false", source, f"docker://{upstream}/b/img:1")
                    ours, peer, spread = timed_pair(
                        lambda h=host: pull(f"{h}/b/img:1", dest),
                        lambda u=upstream: pull(f"{u}/b/img:1", dest),
                        prepare,
                        args.repeat,
                    )
                    rows.append((f"skopeo {label} 4x60 MB", ours, peer, spread))
        report("Registry on SeaweedFS S3 (median wall time; peer = docker-registry s3)", rows, 1.0)


if __name__ == "__main__":
    main()
