"""Pipelines as teams write them (issue 19), end to end on busybox: run-scoped images,
the steps' network, service failures and failure steps, live logs, run listings."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from dockyard.ci.runs import RunDir, run_ids
from tests.support.ci import ci_run, clean_host, cli, lines_of, output, rest_of, steps

SHARED_FIXTURES = (clean_host,)  # autouse: pytest finds it here by name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

APP = "localhost/ci-e2e/app:ci"


def write_project(root: Path, busybox_ref: str, pipeline: str, **files: str) -> Path:
    root.mkdir()
    (root / ".dockyard.yml").write_text(textwrap.dedent(pipeline).replace("IMAGE", busybox_ref))
    for name, text in files.items():
        (root / name).write_text(text.replace("IMAGE", busybox_ref))
    return root


def test_two_runs_at_once_each_test_their_own_image(dockyard, tmp_path, busybox_ref, store_root):
    """Run "main" builds app:ci, then waits (through a cache both runs share) until run
    "feature" has built its own app:ci; each must still test its own."""
    pipeline = """
        name: shared-app
        steps:
          - name: image
            build: {context: ., tags: [APP]}
          - name: sync
            depends_on: [image]
            image: IMAGE
            cache: [/sync]
            commands: ["SYNC"]
          - name: test
            depends_on: [sync]
            image: APP
            commands: [cat /which]
        """.replace("APP", APP)
    wait = (
        "i=0; while [ ! -e /sync/feature-built ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"
    )
    projects = {
        branch: write_project(
            tmp_path / branch,
            busybox_ref,
            pipeline.replace("SYNC", wait if branch == "main" else "touch /sync/feature-built"),
            Dockerfile=f"FROM IMAGE\nRUN echo built-on-{branch} > /which\n",
        )
        for branch in ("main", "feature")
    }
    with ThreadPoolExecutor(2) as pool:
        runs = {b: pool.submit(ci_run, dockyard, p, "--branch", b) for b, p in projects.items()}
    for branch, run in runs.items():
        out, doc = run.result()
        assert doc["status"] == "success"
        assert f"built-on-{branch}" in output(out, "test"), out
    # The runs' names are gone with them; the pipeline's tag never reached the store.
    images = dockyard("images").stdout.decode()
    assert "dockyard-ci/" not in images and "ci-e2e/app" not in images


def test_keep_tags_the_built_image_in_the_store(dockyard, tmp_path, busybox_ref):
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        f"""
        steps:
          - name: image
            build: {{context: ., tags: [{APP}], keep: true}}
        """,
        Dockerfile="FROM IMAGE\nRUN echo kept > /which\n",
    )
    out, _ = ci_run(dockyard, directory)
    assert f"--- tagged {APP} in the store" in output(out, "image")
    assert "ci-e2e/app" in dockyard("images").stdout.decode()
    dockyard("rmi", APP)


def test_a_failed_service_runs_the_failure_steps_and_is_killed_at_once(
    dockyard, tmp_path, busybox_ref
):
    """The service ignores SIGTERM and has a minute to stop: killed as it fails its
    check, the run ends well before that; the failure step runs, the others not."""
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        services:
          db:
            image: IMAGE
            command: [sh, -c, "trap '' TERM; sleep 1742 & wait; sleep 1742"]
            ready: {tcp: 5432, timeout: 1s}
            stop_timeout: 60s
        steps:
          - {name: test, image: IMAGE, commands: [echo never]}
          - name: report
            image: IMAGE
            when: {status: [failure]}
            commands: [echo hook-ran]
        """,
    )
    out, doc = ci_run(dockyard, directory, expect=1)
    assert doc["error"] == "service db not ready after 1s"
    result = steps(doc)
    assert (result["test"]["status"], result["test"]["reason"]) == ("cancelled", "services failed")
    assert result["report"]["status"] == "success"
    assert "hook-ran" in output(out, "report")
    assert "--- killed: not ready in time" in output(out, "db")
    assert doc["duration"] < 30


def read_until(lines: queue.Queue[str | None], wanted: str, timeout: float = 60) -> list[str]:
    """The lines up to the one equal to ``wanted``."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while not seen or seen[-1] != wanted:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        assert line is not None, f"ended before {wanted!r}; got {seen}"
        seen.append(line)
    return seen


def test_follow_a_running_steps_log_from_another_terminal(
    dockyard, tmp_path, busybox_ref, store_root
):
    """While the step waits for a file the test makes, ``ci logs -f`` has printed its
    first line and the record lists it as running; then it ends, and so does -f."""
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        steps:
          - name: slow
            image: IMAGE
            commands:
              - echo first
              - "while [ ! -e /workspace/go ]; do sleep 0.1; done"
              - echo second
              - exit 3
        """,
    )
    args = ("--branch", "feature/x", "--commit", "0123456789abcdef", "--event", "push")
    run = cli(store_root, "ci", "run", *args, str(directory))
    go = None
    try:
        deadline = time.monotonic() + 60
        while not run_ids(store_root):
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.05)
        run_dir = RunDir.find(store_root, "last")
        go = run_dir.workspace / "go"
        follower = cli(store_root, "ci", "logs", "-f", run_dir.id, "slow")
        followed = lines_of(follower)
        assert "+ echo first" in read_until(followed, "first")
        record = run_dir.read_record()
        assert [(s["name"], s["status"]) for s in record["steps"]] == [("slow", "running")]
        go.touch()
        rest = rest_of(followed)
        assert follower.wait(timeout=60) == 0
        assert "second" in rest
        assert rest[-1].startswith("--- failure in ")
    finally:
        if go is not None and run.poll() is None:
            with contextlib.suppress(FileNotFoundError):  # gone: the run is ending
                go.touch()  # whatever failed, the step ends
        run.communicate(timeout=120)
    assert run.returncode == 1
    stamped = dockyard("ci", "logs", "--timestamps", "last", "slow").stdout.decode()
    for line in stamped.splitlines():
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ", line), line
    header, row = dockyard("ci", "runs").stdout.decode().splitlines()[-2:]
    assert header.split() == [
        "RUN", "STATUS", "BRANCH", "COMMIT", "EVENT", "STARTED", "DURATION", "FAILING"
    ]  # fmt: skip
    cells = row.split()
    assert cells[1:5] == ["failure", "feature/x", "0123456789ab", "push"]
    assert cells[-1] == "slow"


def test_variables_reach_strings_and_step_environments(dockyard, tmp_path, busybox_ref):
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        variables: {GREETING: "run-${CI_RUN_NUMBER}-on-${CI_COMMIT_BRANCH}"}
        steps:
          - name: show
            image: IMAGE
            commands:
              - "echo ${GREETING} $$GREETING $CI_COMMIT_SHA ${CI_EVENT}"
              - echo env $$CI_EVENT $$CI_RUN_ID $$CI_PIPELINE
        """,
    )
    args = ("--branch", "dev", "--commit", "c0ffee", "--event", "tag")
    first, doc = ci_run(dockyard, directory, *args)
    second, _ = ci_run(dockyard, directory, *args)
    assert "run-1-on-dev run-1-on-dev c0ffee tag" in output(first, "show")
    assert "run-2-on-dev run-2-on-dev c0ffee tag" in output(second, "show")
    assert f"env tag {doc['id']} .dockyard.yml" in output(first, "show")
    (directory / ".dockyard.yml").write_text(
        f"steps:\n  - name: a\n    image: {busybox_ref}\n    commands: ['echo ${{TYPO}}']\n"
    )
    refused = dockyard("ci", "run", str(directory), check=False)
    assert refused.returncode != 0
    assert b".dockyard.yml:4: steps[0].commands[0]: unknown variable ${TYPO}" in refused.stderr
    assert len(run_ids(dockyard.root)) == 2  # no run started


def test_a_step_starts_in_its_workdir(dockyard, tmp_path, busybox_ref):
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        steps:
          - {name: app, image: IMAGE, workdir: /etc, commands: [pwd]}
          - {name: default, image: IMAGE, commands: [pwd]}
        """,
    )
    out, _ = ci_run(dockyard, directory)
    for step, directory in (("app", "/etc"), ("default", "/workspace")):
        lines = output(out, step)
        assert lines[lines.index("+ pwd") + 1] == directory


def test_a_cache_keyed_by_a_file_hits_and_misses_as_it_changes(dockyard, tmp_path, busybox_ref):
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        steps:
          - name: deps
            image: IMAGE
            cache: {key: {files: [requirements.txt]}, paths: [/root/.cache/pip]}
            commands:
              - "echo found=$(cat /root/.cache/pip/for 2>/dev/null)"
              - cat requirements.txt > /root/.cache/pip/for
        """,
        **{"requirements.txt": "flask==3.0\n"},
    )

    def found() -> str:
        out, _ = ci_run(dockyard, directory)
        return next(line for line in output(out, "deps") if line.startswith("found="))

    assert found() == "found="  # a miss: the first run
    assert found() == "found=flask==3.0"  # a hit
    (directory / "requirements.txt").write_text("flask==3.1\n")
    assert found() == "found="  # changed: a miss
    (directory / "requirements.txt").write_text("flask==3.0\n")
    assert found() == "found=flask==3.0"  # the old content's cache is still there


def test_a_retry_uses_the_cache_its_step_started_with(dockyard, tmp_path, busybox_ref):
    # The key files are read once per step: an attempt that changes them does not move
    # the next attempt to another (empty) cache.
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        steps:
          - name: deps
            image: IMAGE
            cache: {key: {files: [requirements.txt]}, paths: [/cache]}
            retry: {count: 1, when: [{exit_code: 137}]}
            commands:
              - "echo found=$(cat /cache/mark 2>/dev/null)"
              - "[ -e /cache/mark ] && exit 0"
              - echo one > /cache/mark
              - echo 2 > requirements.txt
              - exit 137
        """,
        **{"requirements.txt": "flask==3.0\n"},
    )
    out, doc = ci_run(dockyard, directory)
    assert steps(doc)["deps"]["status"] == "success"
    found = [line for line in output(out, "deps") if line.startswith("found=")]
    assert found == ["found=", "found=one"]


def test_a_locked_cache_is_used_by_one_step_at_a_time(dockyard, tmp_path, busybox_ref):
    """Both combinations start at once; each, holding the cache, waits (1 s at most) for
    the other to begin in it too: with the lock, their turns never interleave."""
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        steps:
          - name: apt
            matrix: {N: [a, b]}
            image: IMAGE
            cache: {paths: [/c], sharing: locked}
            commands:
              - echo begin $N >> /c/turns
              - >-
                i=0; until [ $(grep -c begin /c/turns) = 2 ] || [ $i = 10 ];
                do i=$((i+1)); sleep 0.1; done
              - echo end $N >> /c/turns
              - cat /c/turns
        """,
    )
    out, doc = ci_run(dockyard, directory, "-j", "2")
    assert {s["status"] for s in doc["steps"]} == {"success"}
    turns = [
        [line.split()[0] for line in output(out, f"apt.N-{n}") if line.startswith(("begin", "end"))]
        for n in "ab"
    ]
    assert max(turns, key=len) == ["begin", "end", "begin", "end"]


def test_a_retried_step_keeps_every_attempt(dockyard, tmp_path, busybox_ref):
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        steps:
          - name: flaky
            image: IMAGE
            retry: {count: 2, when: [{exit_code: 137}]}
            commands:
              - "if [ ! -e once ]; then touch once; echo killed; exit 137; fi"
              - echo passed
          - name: broken
            image: IMAGE
            retry: {count: 2, when: [{exit_code: 137}, timeout]}
            failure: ignore
            commands: [exit 1]
        """,
    )
    out, doc = ci_run(dockyard, directory)
    flaky = steps(doc)["flaky"]
    assert flaky["status"] == "success"
    assert [(a["status"], a["exit_code"]) for a in flaky["attempts"]] == [
        ("failure", 137),
        ("success", 0),
    ]
    lines = output(out, "flaky")
    retried = next(i for i, line in enumerate(lines) if line.startswith("--- attempt 1: "))
    assert lines[retried].endswith(" (exit code 137); retrying")
    assert lines.index("killed") < retried < lines.index("passed")
    broken = steps(doc)["broken"]
    assert (broken["status"], broken.get("attempts")) == ("failure", None)  # not retried


def test_a_matrix_runs_its_combinations_in_parallel_and_its_dependant_after_all(
    dockyard, tmp_path, busybox_ref
):
    """Each combination waits (30 s at most) until both have started: they pass only
    if they run at the same time."""
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        steps:
          - name: test
            matrix: {PY: ["3.11", "3.12"]}
            image: IMAGE
            commands:
              - "echo ${PY} > started-$PY"
              - "i=0; until [ $(ls started-* | wc -l) = 2 ]; do"
              - "  i=$((i+1)); [ $i -lt 300 ]; sleep 0.1"
              - done
          - name: after
            depends_on: [test]
            image: IMAGE
            commands: [cat started-3.11 started-3.12]
        """,
    )
    out, doc = ci_run(dockyard, directory, "-j", "2")
    assert [s["name"] for s in doc["steps"]] == ["test.PY-3.11", "test.PY-3.12", "after"]
    assert {s["status"] for s in doc["steps"]} == {"success"}
    lines = output(out, "after")
    assert lines[lines.index("+ cat started-3.11 started-3.12") + 1 :][:2] == ["3.11", "3.12"]
    log = dockyard("ci", "logs", "last", "test.PY-3.12").stdout.decode()
    assert "+ echo 3.12 > started-$PY" in log


SERVE = "mkdir -p /www && echo $ANSWER > /www/v && exec httpd -f -p 8080 -h /www"


def test_steps_have_services_of_their_own_each_in_its_own_network(dockyard, tmp_path, busybox_ref):
    """Both combinations run at once, each with its own ``db`` on port 8080 (they would
    clash in one network), which sees its secret; each reads its own answer."""
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        f"""
        steps:
          - name: test
            matrix: {{V: [one, two]}}
            image: IMAGE
            services:
              db:
                image: IMAGE
                environment: {{ANSWER: "${{V}}"}}
                secrets: [TOKEN]
                command: [sh, -c, '[ "$TOKEN" = s3cret ] && {SERVE}']
                ready: {{tcp: 8080, timeout: 30s}}
            commands:
              - touch started-${{V}}
              - "i=0; until [ -e started-one ] && [ -e started-two ]; do"
              - "  i=$((i+1)); [ $i -lt 300 ]; sleep 0.1"
              - done
              - wget -qO- http://db:8080/v
        """,
    )
    out, doc = ci_run(dockyard, directory, "-j", "2", "--secret", "TOKEN=s3cret")
    assert {s["status"] for s in doc["steps"]} == {"success"}
    for value in ("one", "two"):
        assert output(out, f"test.V-{value}")[-2] == value
        assert "--- ready after" in " ".join(output(out, f"test.V-{value}.db"))


def test_a_step_waits_only_for_the_services_it_uses(dockyard, tmp_path, busybox_ref):
    """The service ``gate`` is ready only once step ``first`` has run: ``first`` must
    not wait for it, ``second`` (all services, by default) must."""
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        """
        services:
          gate:
            image: IMAGE
            command: [sh, -c, "sleep 1742"]
            ready: {command: [sh, -c, "test -e /workspace/go"], timeout: 60s}
        steps:
          - {name: first, image: IMAGE, services: [], commands: [touch go]}
          - {name: second, image: IMAGE, commands: [ls go]}
        """,
    )
    _, doc = ci_run(dockyard, directory, "-j", "2")
    assert [(s["name"], s["status"]) for s in doc["steps"]] == [
        ("first", "success"),
        ("second", "success"),
    ]
    assert doc["duration"] < 50
    first, second = steps(doc)["first"]["timings"], steps(doc)["second"]["timings"]
    assert "services" not in first  # it did not wait
    assert second["services"] >= first["run"]  # it waited for gate, which waited for first
    assert set(doc["services"]["gate"]) == {"pull", "ready"}


def test_a_step_retried_on_service_failure_gets_fresh_services(dockyard, tmp_path, busybox_ref):
    """The step's service exits before it is ready the first time only; its image was
    built earlier in the run, and the step has its name as BUILT_IMAGE."""
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        f"""
        steps:
          - name: image
            build: {{tags: [localhost/ci-e2e/db:1]}}
          - name: test
            depends_on: [image]
            image: IMAGE
            retry: {{count: 1, when: [service_failure]}}
            services:
              db:
                image: localhost/ci-e2e/db:1
                command:
                  - sh
                  - -c
                  - "[ -e /workspace/once ] || {{ touch /workspace/once; exit 3; }};
                    ANSWER=$(cat /marker); {SERVE}"
                ready: {{tcp: 8080, timeout: 30s}}
            commands: [wget -qO- http://db:8080/v, "env | grep ^BUILT_"]
        """,
        Dockerfile="FROM IMAGE\nRUN echo from-the-build > /marker\n",
    )
    out, doc = ci_run(dockyard, directory)
    test = steps(doc)["test"]
    assert test["status"] == "success"
    first, second = test["attempts"]
    assert (first["status"], first["reason"]) == (
        "failure",
        "service db exited with code 3 before it was ready",
    )
    assert second["status"] == "success"
    assert "from-the-build" in output(out, "test")
    assert "BUILT_IMAGE=localhost/ci-e2e/db:1" in output(out, "test")  # in its env
    # timings: the build's steps, the step's phases, its service's pull and readiness
    build = steps(doc)["image"]
    assert [s["step"].split("]")[0] for s in build["build_steps"]] == ["[1/2", "[2/2"]
    assert sum(s["duration"] for s in build["build_steps"]) <= build["timings"]["run"]
    assert set(test["timings"]) == {"services", "pull", "run"}
    assert set(first["timings"]) == {"services"}  # its service failed: nothing more
    assert set(test["services"]["db"]) == {"pull", "ready"}
    assert re.search(r"^test +success +[\d.]+s +[\d.]+s +[\d.]+s +[\d.]+s +0 ", out, re.M)
    assert re.search(r"^service test\.db: pulled in [\d.]+s, ready after [\d.]+s$", out, re.M)


def test_a_pipeline_push_gzips_plain_tar_layers(dockyard, tmp_path, busybox_ref, docker_registry):
    """The base image's layers are plain tar (copied so); pushed, every layer is gzip,
    as ``dockyard push`` sends them."""
    plain = f"{docker_registry.host}/ci-e2e/plain:1"
    dockyard("copy", "--compression-format", "none", f"docker://{busybox_ref}", f"docker://{plain}")
    pushed = f"{docker_registry.host}/ci-e2e/gzipped:1"
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        f"""
        steps:
          - name: image
            build: {{tags: [{pushed}], push: true}}
        """,
        Dockerfile=f"FROM {plain}\nRUN echo more > /more\n",
    )
    ci_run(dockyard, directory)
    manifest = httpx.get(
        f"{docker_registry.url}/v2/ci-e2e/gzipped/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).json()
    types = {layer["mediaType"] for layer in manifest["layers"]}
    assert types == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    assert len(manifest["layers"]) == 2


def test_a_check_step_gates_the_image_the_run_built(dockyard, tmp_path, busybox_ref, store_root):
    """A private key copied in and deleted by a later RUN still ships: the check step
    fails on it, names its layer and path, and counts its rules as tests."""
    directory = write_project(
        tmp_path / "p",
        busybox_ref,
        f"""
        steps:
          - name: image
            build: {{context: ., tags: [{APP}]}}
          - name: gate
            depends_on: [image]
            check: {{image: {APP}, policy: ci/gate.yml}}
          - name: clean
            check: {{image: IMAGE, policy: ci/gate.yml}}
        """,
        Dockerfile=(
            "FROM IMAGE\nCOPY id_ed25519 /root/.ssh/id_ed25519\nRUN rm /root/.ssh/id_ed25519\n"
        ),
    )
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (directory / "ci").mkdir()
    (directory / "ci" / "gate.yml").write_text("secrets: {}\nmax_layers: {max: 50}\n")
    out, doc = ci_run(dockyard, directory, expect=1)
    gate, clean = steps(doc)["gate"], steps(doc)["clean"]
    assert gate["status"] == "failure"
    assert gate["reason"] == "a rule of severity error failed"
    assert gate["tests"] == {"passed": 1, "failed": 1, "skipped": 0, "failing": [f"{APP}.secrets"]}
    lines = output(out, "gate")
    assert any(
        "error: secrets: layer 2" in line
        and "/root/.ssh/id_ed25519 (deleted in layer 3, still shipped)" in line
        for line in lines
    ), lines
    assert clean["status"] == "success"
    assert clean["tests"]["passed"] == 2 and clean["tests"]["failed"] == 0
    (report,) = (store_root / "ci" / "runs").glob("*/artifacts/gate/check.xml")
    assert "/root/.ssh/id_ed25519" in report.read_text()
