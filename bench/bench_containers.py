"""Working containers and ``dockyard watch`` (issue 14).

1. ``container create`` + ``container run`` (a command writing one file) + ``container
   commit`` on a ~200 MB image, beside ``buildah from`` + ``run`` + ``commit`` (goal
   <= 0.3x). Both run with no network, so neither pays for one.
2. Commit cost for 1 and for 10,000 changed files on the 200 MB image, and for 1 file
   on a 1 MB image: it grows with the changes, not with the image below them.
3. ``dockyard watch``: from a saved file to the rebuilt image, on bench_build.py's
   3000-file context with a late ``COPY`` + ``RUN`` of the edited file (goal <= 0.5 s),
   and with an edit of an early-copied source file (every later step reruns). Timed
   from just before the write to the ``watch: rebuilt`` line.

Run as root: ``python3 bench/bench_containers.py [--repeat N] [--cases peers,commit,watch]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench_build import DOCKERFILE, make_context
from common import (
    DOCKYARD,
    docker_registry,
    dockyard_env,
    report,
    run,
    scratch_dir,
    timed_pair,
)

IMAGE_MB = 200
LATE_STEPS = "COPY app.conf /app/app.conf\nRUN cat /app/app.conf > /app/conf.out\n"


def make_rootfs(root: Path, megabytes: int = IMAGE_MB) -> Path:
    """busybox and ``megabytes`` MB of incompressible files of 1 MB."""
    rootfs = root / f"rootfs-{megabytes}"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin/busybox")
    for applet in ("sh", "cat", "find", "wc", "mkdir", "cp", "echo", "true", "seq", "xargs"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    for d in ("etc", "tmp", "data"):
        (rootfs / d).mkdir()
    for i in range(megabytes):
        (rootfs / "data" / f"blob{i}").write_bytes(os.urandom(1 << 20))
    return rootfs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default="peers,commit,watch", help="comma-separated")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    if os.geteuid() != 0:
        raise SystemExit("run as root: containers need it")
    with scratch_dir("containers-") as tmp, docker_registry() as host:
        work = Path(tmp)
        env = dockyard_env(work / "store", work / "pyc")
        base = f"{host}/bench/big:1"
        run(DOCKYARD, "import", "--env", "PATH=/bin", str(make_rootfs(work)), base, env=env)
        run(DOCKYARD, "push", "--progress=quiet", base, env=env)
        short = work / "bh"
        storage = ["--root", str(short / "r"), "--runroot", str(short / "rr")]
        counter = iter(range(10**6))
        names: list[str] = []

        def ours() -> None:
            name = f"c{next(counter)}"
            names.append(name)
            run(DOCKYARD, "container", "create", "--name", name, base, env=env)
            run(
                DOCKYARD, "container", "run", "--network", "none", name, "--",
                "sh", "-c", "echo changed > /etc/changed", env=env,
            )  # fmt: skip
            run(DOCKYARD, "container", "commit", name, f"localhost/bench/c:{name}", env=env)

        def theirs() -> None:
            name = f"b{next(counter)}"
            names.append(name)
            run("buildah", *storage, "from", "-q", "--name", name, base)
            run(
                "buildah", *storage, "run", "--runtime", "runc", "--network", "none", name,
                "--", "sh", "-c", "echo changed > /etc/changed",
            )  # fmt: skip
            run("buildah", *storage, "commit", "-q", name, f"bench-{name}")

        if "peers" in cases:
            run("buildah", *storage, "pull", "-q", "--tls-verify=false", base)
            ours()
            theirs()
            rows = [("create+run+commit, 1 file", *timed_pair(ours, theirs, repeat=args.repeat))]
            title = f"working containers on a {IMAGE_MB} MB image (alternating, medians)"
            report(title, rows, 0.3)
            run("buildah", *storage, "rm", "--all")

        # Commit cost: 1 vs 10,000 changed files, the 200 MB below unchanged.
        def commit_of(files: int, image: str = base) -> float:
            times = []
            for _ in range(args.repeat):
                name = f"n{next(counter)}"
                run(DOCKYARD, "container", "create", "--name", name, image, env=env)
                run(
                    DOCKYARD, "container", "run", "--network", "none", name, "--", "sh", "-c",
                    f"mkdir /many && cd /many && seq 1 {files} | xargs touch", env=env,
                )  # fmt: skip
                start = time.perf_counter()
                run(DOCKYARD, "container", "commit", name, f"localhost/bench/n:{name}", env=env)
                times.append(time.perf_counter() - start)
                run(DOCKYARD, "container", "rm", name, env=env)
            return statistics.median(times)

        if "commit" in cases:
            small = "localhost/bench/small:1"
            run(DOCKYARD, "import", "--env", "PATH=/bin", str(make_rootfs(work, 1)), small, env=env)
            one, many, tiny = commit_of(1), commit_of(10_000), commit_of(1, small)
            print(
                f"\ncontainer commit (median of {args.repeat}): on {IMAGE_MB} MB, 1 file "
                f"{one:.3f}s, 10,000 files {many:.3f}s; on 1 MB, 1 file {tiny:.3f}s"
            )
            run(DOCKYARD, "container", "prune", env=env)
        if "watch" in cases:
            watch_case(work, base, env, args.repeat)


def watch_case(work: Path, base: str, env: dict[str, str], repeat: int) -> None:
    """``dockyard watch``: a saved file to the rebuilt image."""
    context = make_context(work, base)
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base) + LATE_STEPS)
    (context / "app.conf").write_text("conf 0\n")
    watch = subprocess.Popen(
        [DOCKYARD, "watch", "-q", "-t", "localhost/bench/watch:1", str(context)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        until(watch, r"watch: built in")
        late, early = [], []
        for i in range(repeat):
            start = time.perf_counter()
            (context / "app.conf").write_text(f"conf {i + 1}\n")
            until(watch, r"watch: rebuilt")
            late.append(time.perf_counter() - start)
        for i in range(repeat):
            start = time.perf_counter()
            (context / "src/d0/f0.txt").write_text(f"edited {i}\n")
            until(watch, r"watch: rebuilt")
            early.append(time.perf_counter() - start)
    finally:
        watch.terminate()
        watch.wait()
    print(
        f"\nwatch, saved file to rebuilt image (median of {repeat}): "
        f"late COPY + RUN {statistics.median(late):.3f}s (goal <= 0.5), "
        f"early COPY (every later step) {statistics.median(early):.3f}s"
    )


def until(process: subprocess.Popen, pattern: str) -> str:
    """Read ``process``'s stderr until a line matches ``pattern``."""
    assert process.stderr is not None
    while line := process.stderr.readline().decode():
        if re.search(pattern, line):
            return line
        if line.startswith("dockyard: error"):
            raise SystemExit(line)
    raise SystemExit("watch ended")


if __name__ == "__main__":
    main()
