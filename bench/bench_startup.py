"""CLI start-up: ``dockyard --help`` wall time (goal < 150 ms), beside ``skopeo --help``
and a bare ``python3 -c pass`` on the same machine."""

from __future__ import annotations

import subprocess
import sys
import time

from common import DOCKYARD, timed


def main() -> None:
    def runner(*argv: str):
        return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    runner(DOCKYARD, "--help")()  # warm the page cache
    start = time.perf_counter()
    ours = timed(runner(DOCKYARD, "--help"), repeat=15)
    python = timed(runner(sys.executable, "-c", "pass"), repeat=15)
    skopeo = timed(runner("skopeo", "--help"), repeat=15)
    print(f"dockyard --help   {ours * 1000:7.1f} ms  (goal < 150 ms)")
    print(f"python3 -c pass   {python * 1000:7.1f} ms  (interpreter floor)")
    print(f"skopeo --help     {skopeo * 1000:7.1f} ms")
    print(f"(measured in {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
