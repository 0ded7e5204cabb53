"""Push and pull of a 240 MB image (4 x 60 MB incompressible layers) against
docker-registry: dockyard vs skopeo, same source, same registry kind, same run.

Goals (issue 15): push <= 0.6x and pull <= 0.5x skopeo's wall time. The two tools run
alternately, so both see the same load on a shared machine.
Run as root: ``python3 bench/bench_transfer.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from common import (
    DOCKYARD,
    children_cpu_seconds,
    cpu_seconds,
    docker_registry,
    dockyard_env,
    forget_skopeo_blob_cache,
    report,
    reset_dir,
    run,
    scratch_dir,
)

import dockyard

LAYERS = 4
LAYER_MB = 60


def make_image(work: Path, store: Path, name: str) -> None:
    """An image of LAYERS layers, each one file of random bytes, imported into ``store``."""
    from dockyard import reference
    from dockyard.layers import pack
    from dockyard.oci import manifest as manifests
    from dockyard.oci import mediatypes as mt
    from dockyard.oci.descriptor import Descriptor
    from dockyard.oci.home import RawManifest
    from dockyard.store import Store

    target = Store(store)
    layers, diff_ids = [], []
    for i in range(LAYERS):
        layer_dir = work / f"layer{i}"
        layer_dir.mkdir()
        with open(layer_dir / f"data{i}.bin", "wb") as f:
            for _ in range(LAYER_MB):
                f.write(os.urandom(1 << 20))
        with target.blobs.ingest() as blob:
            packed = pack(layer_dir, blob.file)
            blob.commit(packed.digest)
        layers.append(packed.descriptor())
        diff_ids.append(packed.diff_id)
    config = manifests.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    )
    target.blobs.write_bytes(config)
    manifest = manifests.build_manifest(Descriptor.of_bytes(mt.OCI_CONFIG, config), layers)
    destination = target.destination(reference.parse(name))
    destination.put_manifest(RawManifest(manifest.raw, manifest.media_type), root=True)
    destination.commit()


@dataclass
class Pair:
    """Per-run wall times, and CPU seconds of the tool and of the registry, of both
    tools (ours first)."""

    wall: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    tool: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    registry: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))

    def rows(self, case: str, goal: float) -> list[tuple]:
        def row(label: str, times: tuple[list[float], list[float]], *goal: float) -> tuple:
            ratios = [a / b for a, b in zip(*times, strict=True)]
            return (label, *map(median, times), (min(ratios), max(ratios)), *goal)

        total = tuple(
            [a + b for a, b in zip(t, r, strict=True)]
            for t, r in zip(self.tool, self.registry, strict=True)
        )
        return [
            row(case, self.wall, goal),
            row("  CPU s: tool", self.tool),
            row("  CPU s: registry", self.registry),
            row("  CPU s: both", total),
        ]


def measure_pair(
    ours: Callable[[], None],
    peer: Callable[[], None],
    registry: Callable[[], int],
    prepare: Callable[[], None],
    repeat: int,
) -> Pair:
    """Run ``ours`` and ``peer`` alternately ``repeat`` times each, ``prepare`` untimed
    before each run; ``registry()`` is the pid of the registry serving the run."""
    pair = Pair()
    for _ in range(repeat):
        for i, action in enumerate((ours, peer)):
            prepare()
            pid = registry()
            tool, served = children_cpu_seconds(), cpu_seconds(pid)
            start = time.perf_counter()
            action()
            pair.wall[i].append(time.perf_counter() - start)
            pair.tool[i].append(children_cpu_seconds() - tool)
            pair.registry[i].append(cpu_seconds(pid) - served)
    return pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with scratch_dir("transfer-") as tmp:
        work = Path(tmp)
        store = work / "store"
        name = "bench.local/big:1"
        make_image(work, store, name)
        env = dockyard_env(store, work / "pyc")
        pull_store = work / "pull-store"
        pull_env = dockyard_env(pull_store, work / "pyc")
        skopeo_dir = work / "skopeo-oci"
        package = Path(dockyard.__file__).parent  # bytecode compiled before any timing
        run(sys.executable, "-m", "compileall", "-q", str(package), env=env)
        rows = []

        # Push: a fresh registry for every run (started untimed), so nothing is skipped
        # or mounted.
        registries = ExitStack()
        host, pids = "", []

        def fresh_registry() -> None:
            nonlocal host
            registries.close()
            host = registries.enter_context(docker_registry(pids))
            forget_skopeo_blob_cache()

        with registries:
            pair = measure_pair(
                lambda: run(
                    DOCKYARD, "push", "--progress=quiet", name, f"{host}/b/ours:1", env=env
                ),
                lambda: run(
                    "skopeo",
                    "copy",
                    "-q",
                    "--dest-tls-verify=false",
                    f"oci:{store}:{name}",
                    f"docker://{host}/b/peer:1",
                ),
                lambda: pids[-1],
                fresh_registry,
                args.repeat,
            )
        rows += pair.rows("push 4x60 MB", 0.6)

        # Pull: one registry holding the image; each run into an empty destination.
        source_pid: list[int] = []
        with docker_registry(source_pid) as source:
            run(DOCKYARD, "push", "--progress=quiet", name, f"{source}/b/img:1", env=env)

            def prepare() -> None:
                reset_dir(pull_store)
                reset_dir(skopeo_dir)
                forget_skopeo_blob_cache()

            pair = measure_pair(
                lambda: run(DOCKYARD, "pull", "-q", f"{source}/b/img:1", env=pull_env),
                lambda: run(
                    "skopeo",
                    "copy",
                    "-q",
                    "--src-tls-verify=false",
                    f"docker://{source}/b/img:1",
                    f"oci:{skopeo_dir}:img",
                ),
                lambda: source_pid[0],
                prepare,
                args.repeat,
            )
            rows += pair.rows("pull 4x60 MB", 0.5)
        report("Registry transfer (median wall time; peer = skopeo)", rows)
        print(
            "CPU s: the tool's and the registry's CPU time during the run. On a loaded"
            " machine wall time follows it; the registry's ingest (sha256, writes) is"
            " the same for both tools."
        )


if __name__ == "__main__":
    main()
