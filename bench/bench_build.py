"""dockyard build vs buildah on the issue's 11-step Dockerfile (busybox base pulled):
warm rebuild (all hits), cold build (--no-cache), one source file edited; and the
snapshot cost of a RUN that creates 100k small files against ``tar -c`` of that dir.

Each case runs dockyard and buildah alternately, so both see the same load on a shared
machine; the ratio is of the medians, ``pairs`` the range of the per-pair ratios.
Goals (issue 18): warm <= 0.12x buildah, cold <= 0.2x, edited <= 0.12x; snapshot within
2x of tar (issue 3). Run as root: ``python3 bench/bench_build.py [--repeat N] [--no-snapshot]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

from common import DOCKYARD, docker_registry, dockyard_env, report, run, scratch_dir, timed_pair

DOCKERFILE = """\
FROM {base}
ARG VERSION=1
ENV APP=/app
WORKDIR /app
COPY src/ /app/src/
RUN find /app/src -type f | wc -l > /app/count
RUN echo "version $VERSION" > /app/version
RUN mkdir -p /app/out && cp /app/count /app/out/
COPY big.bin /app/big.bin
LABEL org.example.bench=1
CMD ["cat", "/app/version"]
"""


def make_context(root: Path, base: str) -> Path:
    context = root / "context"
    for i in range(3000):
        path = context / "src" / f"d{i % 30}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n" * 4)
    (context / "big.bin").write_bytes(os.urandom(20 << 20))
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    return context


def snapshot_case(context: Path, base: str, work: Path, env: dict[str, str]) -> None:
    """Snapshot cost of a RUN creating 100k files: the layer packing vs ``tar -c``."""
    (context / "Dockerfile").write_text(
        f"FROM {base}\nRUN mkdir /many && cd /many && i=0; while [ $i -lt 100000 ]; do "
        f"echo $i > f$i; i=$((i+1)); done\n"
    )
    start = time.perf_counter()
    run(DOCKYARD, "build", "-q", "--no-cache", "-t", "localhost/many:1", str(context), env=env)
    build_time = time.perf_counter() - start
    many = work / "many"
    run(DOCKYARD, "export", "localhost/many:1", str(many), env=env)
    from dockyard.layers import pack

    with open(os.devnull, "wb") as sink:
        start = time.perf_counter()
        pack(many / "many", sink)
        ours_pack = time.perf_counter() - start
    # tar's output goes through a pipe we drain: written to /dev/null, GNU tar
    # notices and skips reading file contents, which would halve its time.
    start = time.perf_counter()
    with subprocess.Popen(
        ["tar", "-C", str(many / "many"), "-cf", "-", "."], stdout=subprocess.PIPE
    ) as tar:
        assert tar.stdout is not None
        while tar.stdout.read(1 << 20):
            pass
    if tar.returncode:
        raise SystemExit(f"tar -c failed: exit {tar.returncode}")
    tar_time = time.perf_counter() - start
    report(
        "100k-file layer: pack (tar+gzip+sha256) vs tar -c",
        [("pack vs tar -c", ours_pack, tar_time)],
        goal=2.0,
    )
    print(f"(whole --no-cache build of that RUN: {build_time:.2f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-snapshot", action="store_true", help="skip the 100k-file snapshot case"
    )
    args = parser.parse_args()
    with scratch_dir("build-") as tmp, docker_registry() as host:
        work = Path(tmp)
        rootfs = work / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", rootfs / "bin/busybox")
        for applet in ("sh", "cat", "find", "wc", "mkdir", "cp", "echo"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        store = work / "store"
        env = dockyard_env(store, work / "pyc")
        base = f"{host}/bench/busybox:1"
        run(DOCKYARD, "import", str(rootfs), base, env=env)
        run(DOCKYARD, "push", "--progress=quiet", base, env=env)
        context = make_context(work, base)
        short = work / "bh"
        storage = ["--root", str(short / "r"), "--runroot", str(short / "rr")]
        run("buildah", *storage, "pull", "--tls-verify=false", base)

        def ours(*extra: str):
            return lambda: run(
                DOCKYARD, "build", "-q", *extra, "-t", "localhost/bench:1", str(context), env=env
            )

        def theirs(*extra: str):
            return lambda: run(
                "buildah",
                *storage,
                "bud",
                "--layers",
                "--runtime",
                "runc",
                "--format",
                "docker",
                "--tls-verify=false",
                "--network",
                "host",
                *extra,
                "-t",
                "bench",
                str(context),
            )

        ours()()
        theirs()()
        edited = context / "src/d0/f0.txt"
        counter = iter(range(10**6))

        def edit() -> None:
            edited.write_text(f"edited {next(counter)}\n")

        cases = [
            ("warm rebuild (all hits)", ours(), theirs(), None, 0.12),
            ("cold (--no-cache)", ours("--no-cache"), theirs("--no-cache"), None, 0.2),
            ("one source file edited", ours(), theirs(), edit, 0.12),
        ]
        rows = []
        for case, mine, peer, prepare, goal in cases:
            t_ours, t_peer, spread = timed_pair(mine, peer, prepare, repeat=args.repeat)
            rows.append((case, t_ours, t_peer, spread, goal))
        report("dockyard build vs buildah bud --layers (median wall time)", rows)
        if not args.no_snapshot:
            snapshot_case(context, base, work, env)
        subprocess.run(["buildah", *storage, "rm", "--all"], capture_output=True)
        shutil.rmtree(short, ignore_errors=True)


if __name__ == "__main__":
    main()
