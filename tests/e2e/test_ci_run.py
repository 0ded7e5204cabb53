"""``dockyard ci run`` end to end, on the busybox image of the session registry: services
reached by name, a shared workspace, parallel steps, failures and hooks, secrets masked,
caches, in-process image builds, timeouts, Ctrl-C, and a clean host after every test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dockyard.runtime.container import BUNDLES_DIR
from dockyard.runtime.mounts import mount_points_under
from tests.conftest import need
from tests.e2e.test_runtime_container import runc_containers

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


def processes_using(path: Path) -> list[int]:
    """Live pids whose root, working directory or command line lies under ``path``."""
    prefix = str(path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        proc = Path("/proc", entry)
        try:
            if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            places = [os.readlink(proc / "root"), os.readlink(proc / "cwd")]
            cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(p.startswith(prefix) for p in places) or prefix in cmdline:
            found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def clean_host(store_root, tmp_path) -> Iterator[None]:
    """After each test: no mounts, runc containers, bundles, namespaces, workspaces or
    processes left behind."""
    need("runc")
    yield
    assert mount_points_under(tmp_path) == []
    if (store_root / "runc").exists():
        assert runc_containers(store_root) == []
    assert list((store_root / BUNDLES_DIR).glob("*")) == []
    runs = store_root / "ci" / "runs"
    assert list(runs.glob("*/netns")) == []
    assert list(runs.glob("*/workspace")) == []
    assert list((store_root / "snapshots").glob(".scratch-*")) == []
    assert processes_using(tmp_path) == []


@pytest.fixture
def project(tmp_path, busybox_ref):
    """Writes a pipeline (``IMAGE`` stands for the busybox image) and files beside it."""
    root = tmp_path / "project"
    root.mkdir()

    def write(pipeline: str, **files: str) -> Path:
        (root / ".dockyard.yml").write_text(textwrap.dedent(pipeline).replace("IMAGE", busybox_ref))
        for name, text in files.items():
            path = root / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.replace("IMAGE", busybox_ref))
        return root

    return write


def ci_run(dockyard, directory: Path, *args: str, expect: int = 0):
    """Run the pipeline of ``directory``; return (stdout, result JSON)."""
    report = directory.parent / "result.json"
    result = dockyard(
        "ci", "run", "--json", str(report), *args, str(directory), check=False, timeout=300
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == expect, f"exit {result.returncode}\n{out}\n{err}"
    return out, json.loads(report.read_text())


def output(out: str, source: str) -> list[str]:
    """The live lines of ``source`` in the output of ``ci run``."""
    found = []
    for line in out.splitlines():
        name, sep, text = line.partition(" | ")
        if sep and name.strip() == source:
            found.append(text)
    return found


def steps(doc) -> dict[str, dict]:
    return {step["name"]: step for step in doc["steps"]}


def saved_logs(store_root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (store_root / "ci" / "runs").glob("*/**/*.log"))


def test_services_by_name_shared_workspace_and_masked_secrets(dockyard, project, store_root):
    directory = project(
        """
        services:
          web:
            image: IMAGE
            command: [busybox, httpd, -f, -p, "8080", -h, /workspace/www]
            ready: {tcp: 8080, timeout: 30s}
          api:
            image: IMAGE
            command: [busybox, httpd, -f, -p, "8081", -h, /workspace/www]
            ready:
              command: [busybox, wget, -q, -O, /dev/null, "http://127.0.0.1:8081/x"]
              timeout: 30s
        steps:
          - name: fetch
            image: IMAGE
            secrets: [TOKEN]
            commands:
              - busybox wget -qO- http://web:8080/x > fetched.txt
              - busybox wget -qO- http://api:8081/x
              - echo "token=$TOKEN"
              - printf 'abc'; sleep 0.1; printf 'def\\n'
              - echo "$TOKEN" > /tmp/not-in-workspace
          - name: check
            depends_on: [fetch]
            image: IMAGE
            commands: [cat fetched.txt]
        """,
        www__x="served\n",
    )
    out, doc = ci_run(dockyard, directory, "--secret", "TOKEN=abcdef")
    assert output(out, "fetch").count("served") == 1  # from api; web's went to a file
    assert "served" in output(out, "check")  # written by fetch into the shared workspace
    assert "token=********" in output(out, "fetch")
    assert "********" in output(out, "fetch")  # the secret written in two pieces
    assert "abcdef" not in out
    assert b"abcdef" not in saved_logs(store_root)
    assert "abcdef" not in json.dumps(doc)
    assert doc["status"] == "success"
    assert not (directory / "fetched.txt").exists()  # the source tree is untouched
    assert "STEP" in out and "SUCCESS" in out


def test_parallel_fan_out_failures_and_hooks(dockyard, project):
    directory = project(
        """
        steps:
          # Each waits for the other to have started: only parallel steps both finish.
          - name: left
            image: IMAGE
            timeout: 60s
            commands: [touch left.up, "until [ -e right.up ]; do sleep 0.05; done"]
          - name: right
            image: IMAGE
            timeout: 60s
            commands: [touch right.up, "until [ -e left.up ]; do sleep 0.05; done"]
          - name: join
            depends_on: [left, right]
            image: IMAGE
            commands: [ls left.up right.up, exit 3, echo not reached]
          - name: after-join
            depends_on: [join]
            image: IMAGE
            commands: [echo never]
          - name: flaky
            image: IMAGE
            failure: ignore
            commands: [exit 1]
          - name: after-flaky
            depends_on: [flaky]
            image: IMAGE
            commands: [echo after flaky]
          - name: on-failure
            image: IMAGE
            when: {status: [failure]}
            commands: [echo the pipeline failed]
          - name: on-success
            image: IMAGE
            when: {status: [success]}
            depends_on: [join]
            commands: [echo never]
        """
    )
    out, doc = ci_run(dockyard, directory, expect=1)
    result = steps(doc)
    assert result["left"]["status"] == result["right"]["status"] == "success"
    assert (result["join"]["status"], result["join"]["exit_code"]) == ("failure", 3)
    assert "not reached" not in output(out, "join")
    assert result["after-join"]["status"] == "skipped"
    assert result["on-success"]["status"] == "skipped"
    assert (result["flaky"]["status"], result["flaky"]["ignored"]) == ("failure", True)
    assert result["after-flaky"]["status"] == "success"
    assert result["on-failure"]["status"] == "success"
    lines = out.split("\n\n")[0].splitlines()  # the live output, without the summary
    hook = lines.index("on-failure  | the pipeline failed")
    assert all(not line.startswith(("join ", "left ", "right ")) for line in lines[hook:])
    assert doc["status"] == "failure"


def test_a_cache_dir_survives_to_the_next_run(dockyard, project, store_root):
    directory = project(
        """
        steps:
          - name: count
            image: IMAGE
            cache: [/root/.cache/tool]
            commands: ["echo run >> /root/.cache/tool/runs", "wc -l < /root/.cache/tool/runs"]
        """
    )
    first, _ = ci_run(dockyard, directory)
    second, _ = ci_run(dockyard, directory)
    assert "1" in output(first, "count")
    assert "2" in output(second, "count")
    assert len(list((store_root / "ci" / "cache").iterdir())) == 1


def test_an_image_built_in_one_step_runs_in_the_next(
    dockyard, project, store_root, docker_registry
):
    pushed = f"{docker_registry.host}/ci-e2e/built:1"
    directory = project(
        f"""
        steps:
          - name: prepare
            image: IMAGE
            commands: [echo made-by-a-step > version.txt]
          - name: image
            depends_on: [prepare]
            secrets: [TOKEN]
            build: {{context: ., tags: [{pushed}], push: true}}
          - name: use
            depends_on: [image]
            image: {pushed}  # from the store: built there
            commands: [cat /built /version.txt]
        """,
        Dockerfile=(
            "FROM IMAGE\n"
            'RUN --mount=type=secret,id=TOKEN echo "secret=$(cat /run/secrets/TOKEN)"\n'
            "RUN echo built-in-image > /built\n"
            "COPY version.txt /version.txt\n"
        ),
    )
    out, doc = ci_run(dockyard, directory, "--secret", "TOKEN=abcdef")
    assert output(out, "use")[1:3] == ["built-in-image", "made-by-a-step"]
    assert "  secret=********" in output(out, "image")
    assert "abcdef" not in out
    assert f"--- pushing {pushed}" in output(out, "image")
    manifest = httpx.head(
        f"{docker_registry.url}/v2/ci-e2e/built/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert manifest.status_code == 200
    assert steps(doc)["image"]["status"] == "success"


def test_a_timeout_kills_the_whole_tree(dockyard, project):
    directory = project(
        """
        steps:
          - name: slow
            image: IMAGE
            timeout: 1s
            commands: ["sleep 1741 & sleep 1741"]
          - name: after
            depends_on: [slow]
            image: IMAGE
            commands: [echo never]
        """
    )
    _, doc = ci_run(dockyard, directory, expect=1)
    result = steps(doc)
    assert (result["slow"]["status"], result["slow"]["reason"]) == ("timeout", "timed out after 1s")
    assert result["after"]["status"] == "skipped"


def test_a_service_that_never_gets_ready_fails_the_run(dockyard, project):
    directory = project(
        """
        services:
          db:
            image: IMAGE
            command: [sh, -c, "sleep 1742"]
            ready: {tcp: 5432, timeout: 1s}
        steps:
          - {name: test, image: IMAGE, commands: [echo never]}
        """
    )
    out, doc = ci_run(dockyard, directory, expect=1)
    assert doc["error"] == "service db not ready after 1s"
    assert steps(doc)["test"]["status"] == "cancelled"
    assert "never" not in out.replace("echo never", "")


def test_a_service_that_exits_fails_the_run(dockyard, project):
    directory = project(
        """
        services:
          db:
            image: IMAGE
            command: [sh, -c, "exit 4"]
            ready: {tcp: 5432, timeout: 60s}
          cache:
            image: IMAGE
            command: [no-such-command]
            ready: {command: [sh, -c, "exit 1"], timeout: 60s}
        steps:
          - {name: test, image: IMAGE, commands: [echo never]}
        """
    )
    _, doc = ci_run(dockyard, directory, expect=1)
    problems = doc["error"].split("; ")
    assert problems[0] == "service db exited with code 4 before it was ready"
    assert problems[1].startswith("service cache exited (container ")
    assert "no-such-command" in problems[1]


def test_reports_artifacts_and_saved_runs(dockyard, project, store_root):
    report = (
        '<testsuite><testcase classname="t" name="ok"/>'
        '<testcase classname="t" name="bad"><failure/></testcase></testsuite>'
    )
    directory = project(
        f"""
        steps:
          - name: test
            image: IMAGE
            commands:
              - mkdir -p dist out
              - echo app > dist/app.bin
              - echo '{report}' > out/junit.xml
            reports: {{junit: "out/*.xml"}}
            artifacts: ["dist/**"]
        """
    )
    out, doc = ci_run(dockyard, directory)
    test = steps(doc)["test"]
    assert test["tests"] == {"passed": 1, "failed": 1, "skipped": 0, "failing": ["t.bad"]}
    assert test["artifacts"] == ["dist"]
    run_dir = store_root / "ci" / "runs" / doc["id"]
    assert (run_dir / "artifacts" / "test" / "dist" / "app.bin").read_text() == "app\n"
    assert "1 passed, 1 failed" in out
    assert "failing tests in test: t.bad" in out
    logs = dockyard("ci", "logs", doc["id"][:15], "test").stdout.decode()
    assert logs.splitlines()[1] == "+ mkdir -p dist out"  # after pulling
    assert "test | + echo app > dist/app.bin" in dockyard("ci", "logs", "last").stdout.decode()
    runs = dockyard("ci", "runs").stdout.decode().splitlines()
    assert runs[1].split()[:2] == [doc["id"], "success"]


def test_only_selected_steps_and_their_dependencies_run(dockyard, project):
    directory = project(
        """
        steps:
          - {name: a, image: IMAGE, commands: [echo a]}
          - {name: b, image: IMAGE, commands: [echo b], depends_on: [a]}
          - {name: c, image: IMAGE, commands: [echo c]}
        """
    )
    _, doc = ci_run(dockyard, directory, "--only", "b")
    assert [s["name"] for s in doc["steps"]] == ["a", "b"]


def test_errors_before_anything_runs(dockyard, project, store_root):
    directory = project(
        """
        steps:
          - name: a
            image: IMAGE
            secrets: [TOKEN]
            timeout: 10x
        """
    )
    result = dockyard("ci", "run", str(directory), check=False)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        f"dockyard: error: {directory}/.dockyard.yml:6: steps[0].timeout: invalid duration '10x'"
    )
    (directory / ".dockyard.yml").write_text(
        (directory / ".dockyard.yml").read_text().replace("10x", "10s")
    )
    result = dockyard("ci", "run", str(directory), check=False)
    assert result.returncode == 1
    assert b"secrets not given: TOKEN" in result.stderr
    assert not (store_root / "ci" / "runs").exists()


WHILE_STEPS_RUN = """
    services:
      web:
        image: IMAGE
        command: [busybox, httpd, -f, -p, "8080", -h, /workspace]
        ready: {tcp: 8080}
    steps:
      - name: long
        image: IMAGE
        commands: ["echo started", "sleep 1743 & sleep 1743"]
      - name: other
        image: IMAGE
        commands: ["sleep 1744"]
"""
WHILE_SERVICES_GET_READY = """
    services:
      db:
        image: IMAGE
        command: [sh, -c, "echo started; sleep 1745"]
        ready: {command: [sh, -c, "sleep 1746"], timeout: 10m}
      web:
        image: IMAGE
        command: [sh, -c, "sleep 1747"]
        ready: {tcp: 8080, timeout: 10m}
    steps:
      - {name: long, image: IMAGE, commands: [echo never]}
"""


@pytest.mark.parametrize(
    ("pipeline", "started"),
    [(WHILE_STEPS_RUN, b"long  | started"), (WHILE_SERVICES_GET_READY, b"db   | started")],
    ids=["steps", "readiness"],
)
def test_ctrl_c_stops_everything(project, store_root, pipeline, started):
    directory = project(pipeline)
    child = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", "ci", "run", str(directory)],
        env={**os.environ, "DOCKYARD_ROOT": str(store_root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == started:
            break
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr.decode()
    assert b"run cancelled" in stderr
    (record,) = (store_root / "ci" / "runs").glob("*/run.json")
    doc = json.loads(record.read_text())
    assert doc["status"] == "cancelled"
    assert {s["status"] for s in doc["steps"]} == {"cancelled"}
