"""CLI start-up: ``dockyard --help`` and ``dockyard images`` wall time (goal <= 60 ms,
issue 18), beside ``skopeo --help`` and a bare ``python3 -c pass`` on the same machine:
the interpreter's own start (site-packages' ``.pth`` hooks included) is the floor."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from common import DOCKYARD, timed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dockyard-startup-") as store:
        measure({**os.environ, "DOCKYARD_ROOT": store})


def measure(env: dict[str, str]) -> None:
    def runner(*argv: str):
        return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)

    runner(DOCKYARD, "--help")()  # warm the page cache
    runner(DOCKYARD, "images")()
    start = time.perf_counter()
    ours = timed(runner(DOCKYARD, "--help"), repeat=15)
    images = timed(runner(DOCKYARD, "images"), repeat=15)
    python = timed(runner(sys.executable, "-c", "pass"), repeat=15)
    skopeo = timed(runner("skopeo", "--help"), repeat=15)
    print(f"dockyard --help   {ours * 1000:7.1f} ms  (goal <= 60 ms)")
    print(f"dockyard images   {images * 1000:7.1f} ms  (goal <= 60 ms, empty store)")
    print(f"python3 -c pass   {python * 1000:7.1f} ms  (interpreter floor)")
    print(f"skopeo --help     {skopeo * 1000:7.1f} ms")
    print(f"(measured in {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
