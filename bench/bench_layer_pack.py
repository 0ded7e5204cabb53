"""Benchmark: dockyard.layers.pack against ``tar -c | gzip -1 | sha256sum`` on the same tree.

Two trees, made fresh in a temp dir: a ~200 MB mix (incompressible files plus many
small text files) and 100k tiny files (per-file overhead). Each command runs
``--repeat`` times after one warm-up; the best time counts. Throughput is bytes of
file content per second. Run: ``python bench/bench_layer_pack.py [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dockyard.layers import pack

MB = 1_000_000


class _NullSink:
    """Discards the blob: both sides only hash their output."""

    def write(self, data: bytes) -> int:
        return len(data)


def make_mixed(root: Path, total_mb: int) -> int:
    """Half incompressible (1-8 MB random files), half small text files (1-16 KB)."""
    rng = random.Random(42)
    corpus = b"".join(p.read_bytes() for p in sorted(Path(os.__file__).parent.glob("*.py")))
    written = 0
    target = total_mb * MB
    (root / "bin").mkdir(parents=True)
    i = 0
    while written < target // 2:
        size = rng.randint(1, 8) * MB
        (root / "bin" / f"blob{i:04}").write_bytes(os.urandom(size))
        written += size
        i += 1
    i = 0
    while written < target:
        size = rng.randint(1, 16) * 1024
        start = rng.randrange(0, len(corpus) - size)
        d = root / "src" / f"d{i // 200:03}"
        if i % 200 == 0:
            d.mkdir(parents=True)
        (d / f"f{i:06}.txt").write_bytes(corpus[start : start + size])
        written += size
        i += 1
    return written


def make_tiny(root: Path, count: int) -> int:
    """``count`` files of 100-600 bytes in directories of 500."""
    rng = random.Random(7)
    written = 0
    for i in range(count):
        d = root / f"d{i // 500:04}"
        if i % 500 == 0:
            d.mkdir(parents=True)
        data = b"line %d\n" % i * rng.randint(12, 75)
        (d / f"f{i:06}").write_bytes(data)
        written += len(data)
    return written


def best_of(repeat: int, run: Callable[[], object]) -> float:
    run()  # warm-up: page cache, imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def shell(command: str) -> Callable[[], object]:
    return lambda: subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], check=True, stdout=subprocess.DEVNULL
    )


def bench(title: str, tree: Path, content: int, repeat: int) -> None:
    files = sum(len(f) for _, _, f in os.walk(tree))
    print(f"\n{title}: {content / MB:.0f} MB of file content in {files} files")
    baseline_cmd = f"tar -C {tree} -cf - . | gzip -1 | sha256sum"
    rows = [
        ("tar | gzip -1 | sha256sum", shell(baseline_cmd)),
        ("pack gzip (isal, level 1)", lambda: pack(tree, _NullSink(), compression="gzip")),
        ("pack zstd (level 3)", lambda: pack(tree, _NullSink(), compression="zstd")),
        ("pack uncompressed", lambda: pack(tree, _NullSink(), compression=None)),
    ]
    if shutil.which("zstd"):
        rows.insert(
            1, ("tar | zstd -3 | sha256sum", shell(baseline_cmd.replace("gzip -1", "zstd -3 -q")))
        )
    baseline = None
    for label, run in rows:
        seconds = best_of(repeat, run)
        baseline = baseline or seconds
        print(
            f"  {label:28} {seconds:7.3f} s  {content / MB / seconds:8.1f} MB/s"
            f"  {baseline / seconds:5.2f}x vs tar|gzip"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="where to build the trees (default: a temp dir)")
    parser.add_argument("--mixed-mb", type=int, default=200)
    parser.add_argument("--tiny-files", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-layer-") as work:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, trees in {work}")
        mixed = Path(work, "mixed")
        bench("mixed", mixed, make_mixed(mixed, args.mixed_mb), args.repeat)
        shutil.rmtree(mixed)
        tiny = Path(work, "tiny")
        bench("tiny files", tiny, make_tiny(tiny, args.tiny_files), args.repeat)


if __name__ == "__main__":
    main()
