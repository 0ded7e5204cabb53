"""Pipelines as teams write them (issue 19), end to end on busybox: run-scoped images,
the steps' network, service failures and failure steps, live logs, run listings."""

from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.e2e.test_ci_run import (  # noqa: F401 - clean_host: autouse here too
    ci_run,
    clean_host,
    output,
    pytestmark,
    steps,
)

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
