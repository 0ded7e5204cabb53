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
