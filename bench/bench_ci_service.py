"""The CI service: how fast a push becomes a running step, a printed line becomes
visible, and how many trivial runs an agent pool gets through.

A server on SQLite (``--no-local-agent``), two agents of capacity 2 sharing one store
that already holds the busybox image, a repository served as a ``file://`` clone URL.

1. Webhook received -> the step's first line visible through the API (Server-Sent
   Events): checkout, pipeline file, container start and shipping together. The goals
   are 0.5 s to the step's start and 0.5 s from a line to the API: 1 s for both.
2. A printed line -> visible through the API: the step prints ``/proc/uptime`` (the
   host's clock, in hundredths of a second), the client compares it with its own.
3. Runs per minute of a one-step ``true`` pipeline, 20 queued at once over the two
   agents, beside ``dockyard ci run`` of the same pipeline one after another.

Run as root: ``python bench/bench_ci_service.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from bench_runtime import busybox_layout
from common import DOCKYARD, container_bench, free_port, run

IMAGE = "localhost/bench/busybox:latest"
SECRET = "bench-webhook-secret"
UPTIME_STEP = f"""\
steps:
  - name: tick
    image: {IMAGE}
    commands: [cat /proc/uptime, cat /proc/uptime, sleep 0.3, cat /proc/uptime]
"""
TRUE_STEP = f"steps:\n  - {{name: one, image: {IMAGE}, commands: [true]}}\n"


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(work: Path, name: str, pipeline: str) -> tuple[str, str]:
    """A bare repository with ``pipeline`` committed on main: (clone URL, commit)."""
    bare, tree = work / f"{name}.git", work / f"{name}-tree"
    git(work, "init", "-q", "--bare", "-b", "main", str(bare))
    git(work, "clone", "-q", str(bare), str(tree))
    (tree / ".dockyard.yml").write_text(pipeline)
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "bench")
    git(tree, "push", "-q", "origin", "HEAD:refs/heads/main")
    return f"file://{bare}", git(tree, "rev-parse", "HEAD")


def uptime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def follow(api: httpx.Client, path: str):
    """(arrival time, text) of each log line, until the run ends."""
    with api.stream(
        "GET", path, headers={"Accept": "text/event-stream"}, timeout=httpx.Timeout(30, read=300)
    ) as response:
        event: dict[str, str] = {}
        for line in response.iter_lines():
            if line:
                key, _, value = line.partition(": ")
                event[key] = value
                continue
            if event.get("event") == "end":
                return
            if event.get("event") == "log":
                arrived = uptime()
                for _source, text, note in json.loads(event["data"])["lines"]:
                    if not note:
                        yield arrived, text
            event = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    work, _podman, _store, env = container_bench("dycs-")
    processes: list[subprocess.Popen] = []
    try:
        layout = busybox_layout(work)
        run(DOCKYARD, "copy", f"oci:{layout}:latest", IMAGE, env=env)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        data = work / "data"
        processes.append(
            subprocess.Popen(
                [
                    DOCKYARD,
                    "server",
                    "--addr",
                    f"127.0.0.1:{port}",
                    "--data",
                    str(data),
                    "--no-local-agent",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 30
        while not (data / "admin-token").exists() or _down(url):
            if time.monotonic() > deadline:
                sys.exit("the server did not start")
            time.sleep(0.05)
        api = httpx.Client(
            base_url=url + "/api/v1",
            timeout=30,
            headers={"Authorization": "Bearer " + (data / "admin-token").read_text().strip()},
        )
        for i in (1, 2):
            token = api.post("/tokens", json={"name": f"a{i}", "role": "agent"}).json()["token"]
            processes.append(
                subprocess.Popen(
                    [
                        DOCKYARD,
                        "agent",
                        "--server",
                        url,
                        "--name",
                        f"a{i}",
                        "--capacity",
                        "2",
                        "--workdir",
                        str(work / f"agent{i}"),
                    ],
                    env={**env, "DOCKYARD_AGENT_TOKEN": token},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        clone, commit = make_repo(work, "tick", UPTIME_STEP)
        api.post("/repos", json={"name": "tick", "clone_url": clone, "webhook_secret": SECRET})
        body = json.dumps({"ref": "refs/heads/main", "after": commit}).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        to_first_line, line_delays = [], []
        for _ in range(args.repeat + 1):  # the first warms the agents' snapshots up
            sent = uptime()
            response = httpx.post(
                url + "/api/v1/hooks/tick",
                content=body,
                headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signature},
            )
            number = response.json()["queued"]["number"]
            lines = list(follow(api, f"/repos/tick/runs/{number}/logs"))
            to_first_line.append(lines[0][0] - sent)
            printed = [(arrived, text) for arrived, text in lines if _is_uptime(text)]
            line_delays += [arrived - float(text.split()[0]) for arrived, text in printed]
        to_first_line, line_delays = to_first_line[1:], line_delays[3:]

        clone, _ = make_repo(work, "true", TRUE_STEP)
        api.post("/repos", json={"name": "true", "clone_url": clone})
        started = time.perf_counter()
        numbers = [api.post("/repos/true/runs", json={}).json()["number"] for _ in range(args.runs)]
        for number in numbers:
            while api.get(f"/repos/true/runs/{number}").json()["status"] in ("queued", "running"):
                time.sleep(0.05)
        service_rate = args.runs / (time.perf_counter() - started) * 60
        tree = work / "true-tree"
        started = time.perf_counter()
        for _ in range(min(args.runs, 10)):
            run(DOCKYARD, "ci", "run", str(tree), env=env)
        local_rate = min(args.runs, 10) / (time.perf_counter() - started) * 60
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(60)
        shutil.rmtree(work, ignore_errors=True)

    print(f"median of {args.repeat} runs")
    print(
        f"webhook -> step's first line visible: {statistics.median(to_first_line):.3f}s "
        f"(goal: 0.5 s to start + 0.5 s to visible)"
    )
    print(
        f"printed line -> visible through the API: {statistics.median(line_delays):.3f}s "
        f"(max {max(line_delays):.3f}s; goal 0.5 s)"
    )
    print(
        f"runs/minute, 1 trivial step, 2 agents x capacity 2: {service_rate:.0f}; "
        f"dockyard ci run one after another: {local_rate:.0f}"
    )


def _is_uptime(text: str) -> bool:
    try:
        float(text.split()[0])
    except (ValueError, IndexError):
        return False
    return True


def _down(url: str) -> bool:
    try:
        httpx.get(url + "/api/v1", timeout=1)
        return False
    except httpx.TransportError:
        return True


if __name__ == "__main__":
    main()
