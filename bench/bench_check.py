"""Benchmark: ``dockyard check`` of a ~1 GB image in the store against ``tar -t`` over the
same layer blobs (the issue's goal: at most 2x).

The image is made fresh in a scratch store: the Debian minbase rootfs of the test
fixtures (``~/.cache/dockyard-test``; run the slow tests once to make it) as one layer,
then a layer of incompressible binaries and one of many small text files (Python's
sources, copied until the layer is big enough), all gzip. ``check`` runs every rule
that reads layers (secrets, files, packages, the uncompressed size, the user in
``/etc/passwd``); ``tar -t`` lists each layer blob (``tar -tzf``). One run each.
Run: ``python bench/bench_check.py [--total-mb 1000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from common import DOCKYARD, dockyard_env, report, run, scratch_dir

MB = 1_000_000
DEBIAN_TARBALL = Path.home() / ".cache/dockyard-test/debian-bookworm-minbase.tar"
POLICY = """\
user: {allow_root: true}
max_size: {uncompressed: 100GB}
secrets: {}
files: {forbidden: ["/root/.ssh/*", "*.pem"]}
packages: {deny: ["openssl <3.0.7"]}
"""


def make_binaries(root: Path, total: int) -> None:
    rng = random.Random(1)
    (root / "opt/bin").mkdir(parents=True)
    written = i = 0
    while written < total:
        size = rng.randint(1, 8) * MB
        (root / "opt/bin" / f"blob{i:04}").write_bytes(os.urandom(size))
        written += size
        i += 1


def make_sources(root: Path, total: int) -> None:
    sources = sorted(Path(os.__file__).parent.rglob("*.py"))
    written = copy = 0
    while written < total:
        target = root / f"srv/src{copy}"
        for source in sources:
            data = source.read_bytes()
            path = target / source.relative_to(Path(os.__file__).parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written += len(data)
            if written >= total:
                break
        copy += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mb", type=int, default=1000, help="image size, roughly")
    parser.add_argument("--workdir", type=Path, help="keep the store here (reused if made)")
    args = parser.parse_args()
    if not DEBIAN_TARBALL.is_file():
        sys.exit(f"needs {DEBIAN_TARBALL}: run tests/e2e/test_check_images.py once")
    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = args.workdir
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(scratch_dir("check-")))
        env = dockyard_env(work / "store", work / "pyc")
        if not (work / "made").exists():
            make_image(work, args.total_mb, env)
            (work / "made").touch()
        measure(work, env)


def make_image(work: Path, total_mb: int, env: dict[str, str]) -> None:
    debian, binaries, sources = work / "debian", work / "binaries", work / "sources"
    debian.mkdir()
    run("tar", "--numeric-owner", "-xf", str(DEBIAN_TARBALL), "-C", str(debian))
    rest = max(total_mb * MB - 200 * MB, 0)
    make_binaries(binaries, rest * 6 // 10)
    make_sources(sources, rest * 4 // 10)
    # One image of three layers: each import's layer blob, stacked by a build.
    for name, tree in (("debian", debian), ("binaries", binaries), ("sources", sources)):
        run(DOCKYARD, "import", str(tree), f"localhost/bench/{name}:1", env=env)
    context = work / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM localhost/bench/debian:1\nCOPY --from=localhost/bench/binaries:1 / /\n"
        "COPY --from=localhost/bench/sources:1 / /\n"
    )
    run(DOCKYARD, "build", "-q", "-t", "localhost/bench/big:1", str(context), env=env)


def measure(work: Path, env: dict[str, str]) -> None:
    policy = work / "policy.yml"
    policy.write_text(POLICY)
    manifest = subprocess.run(
        [DOCKYARD, "inspect", "localhost/bench/big:1"], env=env, capture_output=True, check=True
    ).stdout
    layers = [layer["digest"] for layer in json.loads(manifest)["Manifest"]["layers"]]
    blobs = [work / "store/blobs/sha256" / d.split(":")[1] for d in layers]
    size = sum(blob.stat().st_size for blob in blobs)
    print(f"image: {len(blobs)} layers, {size / MB:.0f} MB compressed")

    start = time.perf_counter()
    checked = subprocess.run(
        [DOCKYARD, "check", "--policy", str(policy), "localhost/bench/big:1"],
        env=env,
        capture_output=True,
    )
    ours = time.perf_counter() - start
    print(checked.stdout.decode().strip().splitlines()[-1])
    start = time.perf_counter()
    for blob in blobs:
        run("tar", "-tzf", str(blob))
    peer = time.perf_counter() - start
    report("check vs tar -t (one run each)", [("1 GB image, all rules", ours, peer)], 2.0)


if __name__ == "__main__":
    main()
