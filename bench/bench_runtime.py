"""Step overhead: start a container, run ``true``, clean up -- dockyard beside podman.

Three ways of running the same busybox image:

- ``dockyard run --rm IMAGE true`` (the CLI: includes starting Python);
- the in-process step API pipelines use (resolve the image, snapshots as lowers, a fresh
  overlay, runc, cleanup) -- goal: at most 0.5x podman;
- ``podman run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 IMAGE true``
  (the ulimits avoid rlimits this host cannot grant, see PITFALLS), with its default
  network (NAT'd, as dockyard's default) and with ``--network none``, on a temp ``--root``.

podman gets the image from ``dockyard save`` (a docker-archive) via ``podman load``.
Run as root: ``python bench/bench_runtime.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from common import DOCKYARD, container_bench, report, run, timed

IMAGE = "localhost/bench/busybox:latest"
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def busybox_layout(work: Path) -> Path:
    """A busybox OCI layout, made by umoci from the static busybox (as the tests do)."""
    rootfs = work / "rootfs"
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy2(Path(shutil.which("busybox") or "/bin/busybox").resolve(), rootfs / "bin/busybox")
    for applet in ("sh", "true"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    layout = work / "layout"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:latest")
    run("umoci", "insert", "--image", f"{layout}:latest", str(rootfs), "/")
    run("umoci", "config", "--image", f"{layout}:latest", "--config.cmd", "/bin/sh")
    return layout


def in_process_step(store_root: Path):
    """The pipeline's step API, everything a step does after the image is stored."""
    from dockyard import reference
    from dockyard.runtime import ContainerConfig, Snapshots, overlay_rootfs
    from dockyard.runtime import run as run_container
    from dockyard.store import Store

    store = Store(store_root)
    ref = reference.parse(IMAGE)
    config = ContainerConfig(["true"])

    def step() -> None:
        manifest = store.image_manifest(store.resolve(ref))
        assert manifest is not None
        snapshots = Snapshots(store)
        lowers = snapshots.prepare(manifest)
        with snapshots.scratch() as scratch, overlay_rootfs(lowers, scratch) as fs:
            code = run_container(fs.merged, config, root=store.root)
        assert code == 0

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    work, podman, store, env = container_bench("dyb-")
    dockyard = [DOCKYARD]
    try:
        layout = busybox_layout(work)
        run(*dockyard, "copy", f"oci:{layout}:latest", IMAGE, env=env)
        run(*dockyard, "save", "-o", str(work / "busybox.tar"), IMAGE, env=env)
        run(*podman, "load", "-q", "-i", str(work / "busybox.tar"))

        cli = lambda: run(*dockyard, "run", "--rm", IMAGE, "true", env=env)  # noqa: E731
        step = in_process_step(store)
        podman_default = lambda: run(*podman, "run", "--rm", *ULIMITS, IMAGE, "true")  # noqa: E731
        podman_none = lambda: run(  # noqa: E731
            *podman, "run", "--rm", "--network", "none", *ULIMITS, IMAGE, "true"
        )
        for action in (cli, step, podman_default, podman_none):
            action()  # warm up: snapshots, podman's storage and network setup, page cache

        n = args.repeat
        t_cli = timed(cli, repeat=n)
        t_step = timed(step, repeat=n)
        t_podman = timed(podman_default, repeat=n)
        t_podman_none = timed(podman_none, repeat=n)
        python_floor = timed(lambda: run(sys.executable, "-c", "pass", env=env), repeat=n)
    finally:
        subprocess.run([*podman, "system", "reset", "--force"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"median of {n} runs each; python3 -c pass: {python_floor * 1000:.0f} ms")
    report(
        "step overhead (start, true, exit, clean up) vs podman run --rm (default network)",
        [("in-process step API", t_step, t_podman), ("dockyard run --rm (CLI)", t_cli, t_podman)],
        goal=0.5,
    )
    report(
        "the same vs podman run --rm --network none",
        [
            ("in-process step API", t_step, t_podman_none),
            ("dockyard run --rm (CLI)", t_cli, t_podman_none),
        ],
        goal=0.5,
    )


if __name__ == "__main__":
    main()
