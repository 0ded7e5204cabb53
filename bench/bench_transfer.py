"""Push and pull of a 240 MB image (4 x 60 MB incompressible layers) against
docker-registry: dockyard vs skopeo, same source, same registry kind, same run.

Goals (issue 15): push <= 0.6x and pull <= 0.5x skopeo's wall time. The two tools run
alternately, so both see the same load on a shared machine.
Run as root: ``python3 bench/bench_transfer.py [--repeat N] [--baseline OTHER/src]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
class Runs:
    """Per-run wall times and CPU seconds (the tool's, the registry's) of one tool."""

    wall: list[float] = field(default_factory=list)
    tool: list[float] = field(default_factory=list)
    registry: list[float] = field(default_factory=list)

    @property
    def both(self) -> list[float]:
        return [a + b for a, b in zip(self.tool, self.registry, strict=True)]


def compare(label: str, mine: list[float], peer: list[float], *goal: float) -> tuple:
    """A :func:`report` row: medians and the range of per-pair ratios."""
    ratios = [a / b for a, b in zip(mine, peer, strict=True)]
    return (label, median(mine), median(peer), (min(ratios), max(ratios)), *goal)


def measure(
    actions: list[Callable[[], None]],
    registry: Callable[[], int],
    prepare: Callable[[], None],
    repeat: int,
) -> list[Runs]:
    """Run the ``actions`` in turn, ``repeat`` rounds, ``prepare`` untimed before each
    run, so all see the same load; ``registry()`` is the pid of the registry serving
    the run."""
    runs = [Runs() for _ in actions]
    for _ in range(repeat):
        for action, times in zip(actions, runs, strict=True):
            prepare()
            pid = registry()
            tool, served = children_cpu_seconds(), cpu_seconds(pid)
            start = time.perf_counter()
            action()
            times.wall.append(time.perf_counter() - start)
            times.tool.append(children_cpu_seconds() - tool)
            times.registry.append(cpu_seconds(pid) - served)
    return runs


def rows_of(case: str, runs: list[Runs], goal: float) -> list[tuple]:
    """Rows for dockyard (``runs[0]``) against skopeo (``runs[1]``), then the baseline
    dockyard (``runs[2]``, if measured) against skopeo."""
    ours, peer, *baseline = runs
    rows = [
        compare(case, ours.wall, peer.wall, goal),
        compare("  CPU s: tool", ours.tool, peer.tool),
        compare("  CPU s: registry", ours.registry, peer.registry),
        compare("  CPU s: both", ours.both, peer.both),
    ]
    for before in baseline:
        rows += [
            compare("  baseline: wall", before.wall, peer.wall, goal),
            compare("  baseline: CPU s both", before.both, peer.both),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC",
        help="Also time the dockyard whose package is in SRC (e.g. another worktree's"
        " src/), in the same rounds: before/after figures from one run.",
    )
    args = parser.parse_args()

    with scratch_dir("transfer-") as tmp:
        work = Path(tmp)
        store = work / "store"
        name = "bench.local/big:1"
        make_image(work, store, name)
        env = dockyard_env(store, work / "pyc")
        pull_store = work / "pull-store"
        pull_env = dockyard_env(pull_store, work / "pyc")
        envs = {"push": [env], "pull": [pull_env]}
        if args.baseline:
            for kind, root in (("push", store), ("pull", pull_store)):
                base = dockyard_env(root, work / "pyc-baseline")
                envs[kind].append({**base, "PYTHONPATH": str(args.baseline.absolute())})
        skopeo_dir = work / "skopeo-oci"
        for kind_envs in envs.values():  # bytecode compiled before any timing
            for e in kind_envs:
                code = "import dockyard, os; print(os.path.dirname(dockyard.__file__))"
                package = subprocess.run(
                    [sys.executable, "-c", code], env=e, check=True, capture_output=True, text=True
                ).stdout.strip()
                run(sys.executable, "-m", "compileall", "-q", package, env=e)
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

        def push(push_env: dict[str, str]) -> Callable[[], None]:
            return lambda: run(
                DOCKYARD, "push", "--progress=quiet", name, f"{host}/b/ours:1", env=push_env
            )

        def skopeo_push() -> None:
            run(
                "skopeo",
                "copy",
                "-q",
                "--dest-tls-verify=false",
                f"oci:{store}:{name}",
                f"docker://{host}/b/peer:1",
            )

        with registries:
            ours, *before = [push(e) for e in envs["push"]]
            runs = measure(
                [ours, skopeo_push, *before], lambda: pids[-1], fresh_registry, args.repeat
            )
        rows += rows_of("push 4x60 MB", runs, 0.6)

        # Pull: one registry holding the image; each run into an empty destination.
        source_pid: list[int] = []
        with docker_registry(source_pid) as source:
            run(DOCKYARD, "push", "--progress=quiet", name, f"{source}/b/img:1", env=env)

            def prepare() -> None:
                reset_dir(pull_store)
                reset_dir(skopeo_dir)
                forget_skopeo_blob_cache()

            def pull(pull_env: dict[str, str]) -> Callable[[], None]:
                return lambda: run(DOCKYARD, "pull", "-q", f"{source}/b/img:1", env=pull_env)

            def skopeo_pull() -> None:
                run(
                    "skopeo",
                    "copy",
                    "-q",
                    "--src-tls-verify=false",
                    f"docker://{source}/b/img:1",
                    f"oci:{skopeo_dir}:img",
                )

            ours, *before = [pull(e) for e in envs["pull"]]
            runs = measure(
                [ours, skopeo_pull, *before], lambda: source_pid[0], prepare, args.repeat
            )
            rows += rows_of("pull 4x60 MB", runs, 0.5)
        report("Registry transfer (median wall time; peer = skopeo)", rows)
        print(
            "CPU s: the tool's and the registry's CPU time during the run; on a loaded"
            " machine wall time follows it. baseline: the --baseline dockyard, same rounds."
        )


if __name__ == "__main__":
    main()
