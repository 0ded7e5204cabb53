"""The fixed cost of a build whose steps all hit the cache (issue 18): it runs nothing,
so it must not load (let alone start) what running a step needs -- the private NAT
network of RUN steps, runc, overlays, snapshots, layer packing, the registry client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

# Runs ``dockyard ARGS...`` and prints, last on stderr, the dockyard modules it loaded.
LOADED = """\
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(m for m in sys.modules
                                                if m.startswith("dockyard"))), file=sys.stderr))
sys.argv = ["dockyard", *sys.argv[1:]]
from dockyard.cli.main import main
main()
"""

ONLY_WHEN_A_STEP_RUNS = {
    "dockyard.runtime.nat",
    "dockyard.runtime.container",
    "dockyard.runtime.snapshots",
    "dockyard.runtime.rootfs",
    "dockyard.builder.steps",
    "dockyard.layers.packer",
    "dockyard.transfer.pull",
    "dockyard.registry.client",
}


def test_cached_rebuild_loads_nothing_a_step_run_needs(dockyard, busybox_rootfs, tmp_path):
    base = "localhost/fast/busybox:1"
    dockyard("import", str(busybox_rootfs), base)
    context = tmp_path / "context"
    (context / "src").mkdir(parents=True)
    (context / "src/a.txt").write_text("a\n")
    (context / "Dockerfile").write_text(
        f"FROM {base}\nWORKDIR /app\nCOPY src/ /app/src/\nRUN cat /app/src/a.txt > /app/b\n"
    )
    dockyard("build", "-q", "-t", "localhost/fast/app:1", str(context))
    first = dockyard("inspect", "--raw", "localhost/fast/app:1").stdout

    again = subprocess.run(
        [sys.executable, "-c", LOADED, "build", "-t", "localhost/fast/app:1", str(context)],
        capture_output=True,
        env={**os.environ, "DOCKYARD_ROOT": str(dockyard.root)},
        check=True,
    )
    *log, loaded = again.stderr.decode().splitlines()
    assert sum("CACHED" in line for line in log) == 3, log  # WORKDIR, COPY, RUN
    assert dockyard("inspect", "--raw", "localhost/fast/app:1").stdout == first  # the same image
    assert ONLY_WHEN_A_STEP_RUNS.isdisjoint(json.loads(loaded))


@pytest.mark.parametrize(
    ("dockerfile", "ahead"),
    [
        ("WORKDIR /app\nRUN true\n", True),  # a step runs before the RUN: made meanwhile
        ("RUN true\n", False),  # nothing runs before it: made when it starts
        ("WORKDIR /app\nRUN --network=none true\n", False),  # no RUN step needs it
    ],
)
def test_the_nat_network_is_made_ahead_while_the_steps_before_a_run_run(
    dockyard, busybox_rootfs, tmp_path, dockerfile, ahead
):
    from dockyard.builder.builder import Builder, BuildOptions
    from dockyard.store import Store

    base = "localhost/fast/busybox:1"
    dockyard("import", str(busybox_rootfs), base)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {base}\n{dockerfile}")
    builder = Builder(Store(dockyard.root), BuildOptions(context=context, no_cache=True))
    assert builder.build().executed == dockerfile.count("\n")
    assert (builder._nat_maker is not None) == ahead


def test_a_nat_network_made_ahead_that_fails_fails_the_run_step(
    dockyard, busybox_rootfs, tmp_path, monkeypatch
):
    """slirp4netns missing: the thread making the network ahead fails quietly, and the
    RUN step that needs it tries again and fails, saying why."""
    from dockyard.builder.builder import BuildOptions, build
    from dockyard.errors import DockyardError
    from dockyard.runtime import nat
    from dockyard.store import Store

    base = "localhost/fast/busybox:1"
    dockyard("import", str(busybox_rootfs), base)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {base}\nWORKDIR /app\nRUN true\n")
    monkeypatch.setattr(nat, "SLIRP4NETNS", str(tmp_path / "no-slirp4netns"))
    with pytest.raises(DockyardError, match=r"cannot start .*no-slirp4netns"):
        build(Store(dockyard.root), BuildOptions(context=context, no_cache=True))
