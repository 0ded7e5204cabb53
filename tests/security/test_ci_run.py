"""The workspace attacks of ``test_ci_workspace`` end to end: real steps in containers
under ``dockyard ci run``, one of them racing the collection of another's artifacts."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

VICTIM = "host secret"
FLIPS = 5000
FILES = 1000
COLLECTORS = 6


def run(dockyard, tmp_path: Path, pipeline: str, busybox_ref: str) -> dict:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / ".dockyard.yml").write_text(textwrap.dedent(pipeline).replace("IMAGE", busybox_ref))
    report = tmp_path / "result.json"
    result = dockyard("ci", "run", "--json", str(report), str(project), check=False, timeout=300)
    assert report.exists(), result.stderr.decode()
    return json.loads(report.read_text())


def test_symlink_loops_in_artifact_and_report_globs_end_at_once(
    dockyard, tmp_path, busybox_ref, store_root
):
    doc = run(
        dockyard,
        tmp_path,
        """\
        steps:
          - name: loops
            image: IMAGE
            commands: ["mkdir out", "ln -s .. out/a", "ln -s .. out/b", "ln -s .. out/c"]
            artifacts: ["out/**"]
            reports: {junit: "**/*.xml"}
            timeout: 60s
        """,
        busybox_ref,
    )
    (step,) = doc["steps"]
    assert (doc["status"], step["artifacts"]) == ("success", ["out"])
    saved = store_root / "ci" / "runs" / doc["id"]
    assert os.readlink(saved / "artifacts" / "loops" / "out" / "a") == ".."


def test_a_parallel_step_flipping_a_dir_to_a_host_symlink_saves_no_host_file(
    dockyard, tmp_path, busybox_ref, store_root
):
    host = tmp_path / "host"  # the sacrificial host dir the symlink points to
    host.mkdir()
    for i in range(FILES):
        (host / f"f{i}").write_text(VICTIM)
    collectors = "".join(
        f"""
          - name: collect{n}
            image: IMAGE
            depends_on: [build]
            commands: ["while [ ! -e flipping ]; do :; done"]
            artifacts: ["dist/**", "dist/d/*"]"""
        for n in range(COLLECTORS)
    )
    doc = run(
        dockyard,
        tmp_path,
        f"""\
        steps:
          - name: build
            image: IMAGE
            commands:
              - mkdir -p dist/d
              - i=0; while [ $i -lt {FILES} ]; do echo built > dist/d/f$i; i=$((i+1)); done
          - name: flip
            image: IMAGE
            depends_on: [build]
            commands:
              - ln -s {host} dist/link && touch flipping
              - >-
                i=0; while [ $i -lt {FLIPS} ]; do mv dist/d dist/real; mv dist/link dist/d;
                mv dist/d dist/link; mv dist/real dist/d; i=$((i+1));
                j=0; while [ $j -lt 100 ]; do j=$((j+1)); done; done
        """
        + collectors,
        busybox_ref,
    )
    assert doc["status"] == "success", doc
    artifacts = store_root / "ci" / "runs" / doc["id"] / "artifacts"
    saved = [Path(d, n) for d, _, names in os.walk(artifacts) for n in names]
    leaked = [str(p) for p in saved if not p.is_symlink() and p.read_text() == VICTIM]
    assert leaked == []
    assert any(p.read_text() == "built\n" for p in saved if not p.is_symlink())


def test_a_check_steps_policy_is_read_inside_the_workspace(
    dockyard, tmp_path, busybox_ref, store_root
):
    """A policy symlinked to a host file (here a sacrificial one) is refused, its
    content never read, and the step fails with the file named."""
    victim = tmp_path / "victim.yml"
    victim.write_text("secrets: {}\n# host-secret-content\n")
    pipeline = """\
        steps:
          - name: gate
            check: {image: IMAGE, policy: gate.yml}
        """
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "gate.yml").symlink_to(victim)
    doc = run(dockyard, tmp_path, pipeline, busybox_ref)
    gate = {step["name"]: step for step in doc["steps"]}["gate"]
    assert gate["status"] == "failure"
    assert gate["reason"] == "gate.yml: cannot read: it leads out of the workspace"
    assert b"host-secret-content" not in b"".join(
        p.read_bytes() for p in (store_root / "ci" / "runs").glob("*/**/*.log")
    )
