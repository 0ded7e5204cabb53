"""Pipeline overhead: a CI step beside ``podman run --rm``, and a 5-step pipeline.

1. Step overhead (start, ``true``, exit, clean up) on the same busybox image:
   - one step as the runner runs it (``dockyard.ci.steps.run_step``: image lookup, fresh
     overlay, the run's NAT'd network namespace and workspace bind, ``sh -e -c``, masked
     log file, cleanup) -- goal: at most 0.5x podman;
   - a whole one-step pipeline in-process (``run_pipeline``: run dir, workspace copy,
     network namespace, record);
   - ``dockyard ci run`` of that pipeline (the CLI, Python start included); also timed
     alternately with podman ``--network none`` for issue 18's ratio (goal <= 1.0x);
   - ``podman run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 IMAGE true``
     with its default network and with ``--network none``, on a temp ``--root``.
2. A pipeline of 5 steps (``a``, then ``b c d`` in parallel, then ``e``), each running
   ``sleep 0.1``, with one service (busybox httpd, ready on TCP): its wall time beside
   the sum of its commands (0.5 s) and their critical path (0.3 s).

podman gets the image through ``dockyard save`` and ``podman load``.
Run as root: ``python bench/bench_ci.py [--repeat N] [--no-podman-network]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path

from bench_runtime import ULIMITS, busybox_layout
from common import DOCKYARD, container_bench, report, run, timed, timed_pair

IMAGE = "localhost/bench/busybox:latest"
SLEEP = 0.1

ONE_STEP = f"steps:\n  - {{name: one, image: {IMAGE}, commands: [true]}}\n"
FIVE_STEPS = f"""\
services:
  web:
    image: {IMAGE}
    command: [busybox, httpd, -f, -p, "8080", -h, /workspace]
    ready: {{tcp: 8080}}
steps:
  - {{name: a, image: {IMAGE}, commands: ["sleep {SLEEP}"]}}
  - {{name: b, image: {IMAGE}, commands: ["sleep {SLEEP}"], depends_on: [a]}}
  - {{name: c, image: {IMAGE}, commands: ["sleep {SLEEP}"], depends_on: [a]}}
  - {{name: d, image: {IMAGE}, commands: ["sleep {SLEEP}"], depends_on: [a]}}
  - {{name: e, image: {IMAGE}, commands: ["sleep {SLEEP}"], depends_on: [b, c, d]}}
"""


def step_in_run(store: Path, project: Path, stack: ExitStack):
    """``run_step`` of a ``true`` step inside a prepared run (namespace, workspace)."""
    from dockyard.ci.context import RunContext
    from dockyard.ci.images import Images
    from dockyard.ci.pipeline import load_pipeline
    from dockyard.ci.results import Events
    from dockyard.ci.runs import RunDir
    from dockyard.ci.steps import run_step
    from dockyard.ci.workspace import create_workspace
    from dockyard.runtime.mounts import remove_tree
    from dockyard.runtime.nat import NAMESERVER, NatNetwork
    from dockyard.store import Store

    pipeline = load_pipeline(project / ".dockyard.yml")
    step = pipeline.step("one")
    store_ = Store(store)
    run_dir = RunDir.create(store)
    stack.callback(remove_tree, run_dir.path)
    create_workspace(project, run_dir.workspace)
    network = stack.enter_context(NatNetwork())
    ctx = RunContext(store_, Images(store_), run_dir, Path(network.path), [], {}, Events())
    ctx.dns = (NAMESERVER,)

    def action() -> None:
        assert run_step(ctx, step, {}, pipeline.cache_key).status == "success"

    return action


def whole_run(store: Path, project: Path):
    """``run_pipeline`` of the pipeline in ``project``."""
    from dockyard.ci import RunOptions, load_pipeline, run_pipeline

    pipeline = load_pipeline(project / ".dockyard.yml")

    def action() -> None:
        assert run_pipeline(pipeline, RunOptions(store_root=store)).succeeded

    return action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--no-podman-network",
        action="store_true",
        help="leave out podman with its default network (CNI fails on some hosts)",
    )
    args = parser.parse_args()
    work, podman, store, env = container_bench("dyc-")
    dockyard = [DOCKYARD]
    one, five = work / "one", work / "five"
    for directory, text in ((one, ONE_STEP), (five, FIVE_STEPS)):
        directory.mkdir()
        (directory / ".dockyard.yml").write_text(text)
    n = args.repeat
    try:
        layout = busybox_layout(work)
        run(*dockyard, "copy", f"oci:{layout}:latest", IMAGE, env=env)
        run(*dockyard, "save", "-o", str(work / "busybox.tar"), IMAGE, env=env)
        run(*podman, "load", "-q", "-i", str(work / "busybox.tar"))
        with ExitStack() as stack:
            step = step_in_run(store, one, stack)
            one_run = whole_run(store, one)
            five_run = whole_run(store, five)
            cli_one = lambda: run(*dockyard, "ci", "run", str(one), env=env)  # noqa: E731
            cli_five = lambda: run(*dockyard, "ci", "run", str(five), env=env)  # noqa: E731
            podman_default = lambda: run(*podman, "run", "--rm", *ULIMITS, IMAGE, "true")  # noqa: E731
            podman_none = lambda: run(  # noqa: E731
                *podman, "run", "--rm", "--network", "none", *ULIMITS, IMAGE, "true"
            )
            actions = {
                "step": step,
                "one": one_run,
                "cli_one": cli_one,
                "podman": podman_default,
                "podman_none": podman_none,
                "five": five_run,
                "cli_five": cli_five,
            }
            if args.no_podman_network:
                del actions["podman"]
            for action in actions.values():
                action()  # warm up: snapshots, podman's storage, page cache
            t = {name: timed(action, repeat=n) for name, action in actions.items()}
            # The goal's ratio (<= 1.0x), from alternating runs: both under the same load.
            *pair, pair_range = timed_pair(cli_one, podman_none, repeat=n)
    finally:
        subprocess.run([*podman, "system", "reset", "--force"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"median of {n} runs each")
    for title, peer in (("default network", "podman"), ("--network none", "podman_none")):
        if peer not in t:
            continue
        report(
            f"step overhead (start, true, exit, clean up) vs podman run --rm ({title})",
            [
                ("ci step (run_step)", t["step"], t[peer]),
                ("1-step pipeline, in-process", t["one"], t[peer]),
                ("dockyard ci run, 1 step", t["cli_one"], t[peer]),
            ],
            goal=0.5,
        )
    report(
        "dockyard ci run, 1 step, vs podman run --rm --network none, alternating runs",
        [("dockyard ci run, 1 step", *pair, pair_range)],
        goal=1.0,
    )
    commands, critical = 5 * SLEEP, 3 * SLEEP
    print(f"\n5 steps (a; b c d in parallel; e) of 'sleep {SLEEP}' + 1 service (httpd, tcp ready)")
    print(f"{'case':<28}{'wall':>10}{'commands':>10}{'critical':>10}{'overhead':>10}")
    for case, wall in (
        ("in-process run_pipeline", t["five"]),
        ("dockyard ci run (CLI)", t["cli_five"]),
    ):
        print(f"{case:<28}{wall:>9.3f}s{commands:>9.3f}s{critical:>9.3f}s{wall - critical:>9.3f}s")


if __name__ == "__main__":
    main()
