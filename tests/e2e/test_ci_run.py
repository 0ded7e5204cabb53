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
from pathlib import Path

import httpx
import pytest

from dockyard.ci.output import saved_lines
from dockyard.ci.runs import RunDir
from dockyard.runtime import create_netns
from tests.support.ci import ci_run, clean_host, output, steps

SHARED_FIXTURES = (clean_host,)  # autouse: pytest finds it here by name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


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


def listed_runs(dockyard) -> list[str]:
    """The run ids ``dockyard ci runs`` lists."""
    return [row.split()[0] for row in dockyard("ci", "runs").stdout.decode().splitlines()[1:]]


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


def test_a_silent_build_stops_at_its_timeout(dockyard, project):
    directory = project(
        """
        steps:
          - {name: pull, image: IMAGE, commands: [true]}  # the build then starts at once
          - name: image
            depends_on: [pull]
            timeout: 2s
            build: {context: .}
          - name: after
            depends_on: [image]
            image: IMAGE
            commands: [echo never]
        """,
        Dockerfile="FROM IMAGE\nRUN echo started; sleep 1748\n",
    )
    out, doc = ci_run(dockyard, directory, expect=1)
    result = steps(doc)
    assert "  started" in output(out, "image")  # killed while running, silent
    assert (result["image"]["status"], result["image"]["reason"]) == (
        "timeout",
        "timed out after 2s",
    )
    assert result["image"]["duration"] < 60
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


def test_services_stop_with_their_stop_signal_and_are_killed_after_their_timeout(
    dockyard, project, store_root, tmp_path, busybox_ref
):
    usr1 = tmp_path / "usr1"
    usr1.mkdir()
    (usr1 / "Dockerfile").write_text(f"FROM {busybox_ref}\nSTOPSIGNAL SIGUSR1\n")
    dockyard("build", "-t", "localhost/ci-e2e/usr1:1", str(usr1))
    # Each service traps (or ignores) signals, says it is up, and idles interruptibly.
    loop = "echo up > /workspace/$0.up; while true; do sleep 1 & wait; done"
    polite = "trap 'echo cleaning up; sleep 0.2; echo done; exit 0' TERM"
    directory = project(
        f"""
        services:
          polite:
            image: IMAGE
            command: [sh, -c, "{polite}; {loop}", polite]
          usr1:
            image: localhost/ci-e2e/usr1:1
            command: [sh, -c, "trap 'echo got TERM' TERM; trap 'exit 5' USR1; {loop}", usr1]
          stubborn:
            image: IMAGE
            command: [sh, -c, "trap 'echo not stopping' TERM; {loop}", stubborn]
            stop_timeout: 1s
          deaf:
            image: IMAGE
            command: [sh, -c, "trap '' TERM; {loop}", deaf]
        steps:
          - name: wait
            image: IMAGE
            timeout: 60s
            commands:
              - for s in polite usr1 stubborn deaf; do until [ -e $s.up ]; do sleep 0.05; done; done
        """
    )
    out, doc = ci_run(dockyard, directory)
    assert output(out, "polite")[-3:] == [
        "cleaning up",
        "done",
        "--- stopped by SIGTERM: exited with code 0",
    ]
    assert output(out, "usr1")[-1] == "--- stopped by SIGUSR1: exited with code 5"
    assert "got TERM" not in output(out, "usr1")
    assert output(out, "stubborn")[-2:] == [
        "not stopping",
        "--- killed: still running 1s after SIGTERM",
    ]
    # Not waited for: it would have taken 10s.
    assert output(out, "deaf")[-1] == "--- killed: its first process has no handler for SIGTERM"
    saved = (store_root / "ci" / "runs" / doc["id"] / "services" / "polite.log").read_bytes()
    assert list(saved_lines(saved))[-2:] == ["done", "--- stopped by SIGTERM: exited with code 0"]


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


def test_prune_deletes_old_runs_unused_caches_and_what_killed_runs_left(
    dockyard, project, store_root
):
    directory = project(
        """
        steps:
          - {name: a, image: IMAGE, commands: [echo hi, echo data > /cache/file], cache: [/cache]}
        """
    )
    _, first = ci_run(dockyard, directory)
    _, last = ci_run(dockyard, directory)
    # A run whose process was killed: its record says running, its namespace is mounted.
    killed = RunDir(store_root / "ci" / "runs" / "20000101-000000-dead")
    killed.path.mkdir()
    killed.write_record({"id": killed.id, "status": "running", "pid": 2**22 + 1})
    create_netns(killed.path / "netns")
    assert listed_runs(dockyard) == [killed.id, first["id"], last["id"]]

    pruned = dockyard("ci", "prune", "--keep", "1").stdout.decode()
    assert pruned.startswith("removed 2 runs and 0 caches, ")
    assert listed_runs(dockyard) == [last["id"]]
    assert b"\nhi\n" in dockyard("ci", "logs", last["id"], "a").stdout
    assert len(list((store_root / "ci" / "cache").iterdir())) == 1

    pruned = dockyard("ci", "prune", "--keep", "0", "--caches-unused-for", "1ms").stdout.decode()
    assert pruned.startswith("removed 1 runs and 1 caches, ")
    assert listed_runs(dockyard) == []
    assert list((store_root / "ci" / "cache").iterdir()) == []
    bad = dockyard("ci", "prune", "--caches-unused-for", "soon", check=False)
    assert b"invalid duration 'soon'" in bad.stderr


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
        cache: [/cache]
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


WHILE_A_BUILD_RUNS = """
    steps:
      - name: image
        build: {context: .}
"""
SILENT_BUILD = {"Dockerfile": "FROM IMAGE\nRUN echo started; sleep 1749\n"}


@pytest.mark.parametrize(
    ("pipeline", "files", "started", "signum"),
    [
        (WHILE_STEPS_RUN, {}, b"long  | started", signal.SIGINT),
        (WHILE_SERVICES_GET_READY, {}, b"db   | started", signal.SIGINT),
        (WHILE_A_BUILD_RUNS, SILENT_BUILD, b"image |   started", signal.SIGTERM),
    ],
    ids=["steps", "readiness", "build-sigterm"],
)
def test_ctrl_c_and_sigterm_stop_everything(
    dockyard, project, store_root, tmp_path, pipeline, files, started, signum
):
    directory = project(pipeline, **files)
    report = tmp_path / "result.json"
    command = ["ci", "run", "--json", str(report), str(directory)]
    child = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", *command],
        env={**os.environ, "DOCKYARD_ROOT": str(store_root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        for line in child.stdout:
            if line.strip() == started:
                break
        pruned = dockyard("ci", "prune", "--keep", "0", "--caches-unused-for", "1ms").stdout
    finally:
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=60)
    assert pruned.startswith(b"removed 0 runs and 0 caches")  # the run holds both
    assert child.returncode == 130, stderr.decode()
    assert b"run cancelled" in stderr
    (record,) = (store_root / "ci" / "runs").glob("*/run.json")
    doc = json.loads(record.read_text())
    assert doc["status"] == "cancelled"
    assert {s["status"] for s in doc["steps"]} == {"cancelled"}
    assert json.loads(report.read_text()) == doc


GREET_PACKAGE = """\
#!/bin/bash
# Packages a perl program as a .deb with dpkg-deb: Debian's own toolchain.
set -euo pipefail
root=build/greet
mkdir -p "$root/DEBIAN" "$root/usr/bin" dist
printf '#!/usr/bin/perl\\nprint "hello from greet 1.0, perl ", substr($^V, 1), "\\\\n";\\n' \\
  > "$root/usr/bin/greet"
chmod 755 "$root/usr/bin/greet"
printf '%s\\n' 'Package: greet' 'Version: 1.0' 'Architecture: all' \\
  'Maintainer: ci <ci@example.org>' 'Description: says hello' > "$root/DEBIAN/control"
dpkg-deb --root-owner-group --build "$root" dist/greet_1.0_all.deb
sha256sum dist/greet_1.0_all.deb > dist/SHA256SUMS
"""


@pytest.mark.slow
def test_a_debian_toolchain_packages_installs_and_builds(dockyard, project, debian_ref):
    directory = project(
        """
        steps:
          - name: package
            image: DEBIAN
            commands: [bash package.sh, "dpkg-deb --field dist/greet_1.0_all.deb Version"]
            artifacts: ["dist/*.deb"]
          - name: install
            depends_on: [package]
            image: DEBIAN
            commands: [sha256sum -c dist/SHA256SUMS, dpkg -i dist/greet_1.0_all.deb, greet]
          - name: image
            depends_on: [package]
            build: {context: ., tags: [localhost/ci-e2e/greet:1]}
          - name: smoke
            depends_on: [image]
            image: localhost/ci-e2e/greet:1
            commands: [greet, "dpkg-query -W greet"]
        """.replace("DEBIAN", debian_ref),
        **{"package.sh": GREET_PACKAGE},
        Dockerfile=(
            f"FROM {debian_ref}\n"
            "COPY dist/greet_1.0_all.deb /tmp/\n"
            "RUN dpkg -i /tmp/greet_1.0_all.deb && rm /tmp/greet_1.0_all.deb\n"
        ),
    )
    out, doc = ci_run(dockyard, directory)
    assert doc["status"] == "success"
    assert "1.0" in output(out, "package")
    assert steps(doc)["package"]["artifacts"] == ["dist/greet_1.0_all.deb"]
    install = output(out, "install")
    assert "dist/greet_1.0_all.deb: OK" in install
    greeting = next(line for line in install if line.startswith("hello from greet 1.0"))
    assert greeting.startswith("hello from greet 1.0, perl 5.")
    assert greeting in output(out, "smoke")
    assert "greet\t1.0" in output(out, "smoke")
