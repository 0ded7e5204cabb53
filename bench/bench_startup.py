"""CLI start-up: ``dockyard --help`` and ``dockyard images`` wall time (goal <= 60 ms,
issue 18), beside ``skopeo --help`` and a bare ``python3 -c pass`` on the same machine:
the interpreter's own start (site-packages' ``.pth`` hooks included) is the floor."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import DOCKYARD, dockyard_env, scratch_dir


def main() -> None:
    with scratch_dir("startup-") as tmp:  # bytecode cached, as for an installed dockyard
        measure(dockyard_env(Path(tmp) / "store", Path(tmp) / "pyc"))


def measure(env: dict[str, str], repeat: int = 15) -> None:
    """Median wall time of each command, the commands run in turn (each round runs all
    four, so a busy moment on a shared machine costs each the same)."""
    commands = {
        "dockyard --help": ([DOCKYARD, "--help"], "goal <= 60 ms"),
        "dockyard images": ([DOCKYARD, "images"], "goal <= 60 ms, empty store"),
        "python3 -c pass": ([sys.executable, "-c", "pass"], "interpreter floor"),
        "skopeo --help": (["skopeo", "--help"], ""),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    start = time.perf_counter()
    for round_ in range(repeat + 1):  # the first round warms the page cache
        for name, (argv, _) in commands.items():
            began = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
            if round_:
                times[name].append(time.perf_counter() - began)
    for name, (_, note) in commands.items():
        median = statistics.median(times[name]) * 1000
        print(f"{name:<18}{median:7.1f} ms" + (f"  ({note})" if note else ""))
    print(f"(median of {repeat} rounds, measured in {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
