"""The OCI distribution-spec conformance suite against ``dockyard registry serve``.

The suite (opencontainers/distribution-spec ``conformance/``, built offline: one Go
binary needing only libc, and its ``run`` script needing bash and python3) lives beside
the project in ``shared/conformance``, next to the repository (``../shared``) or next to
the directory of worktrees that holds it. ``OCI_CONFORMANCE_RUN`` names another ``run``.
Missing, the test is skipped locally and fails in CI, as a missing peer tool does.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.registry_server import start_server

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_suite() -> Path | None:
    """``shared/conformance/run`` in the nearest ancestor of the repository that has it."""
    given = os.environ.get("OCI_CONFORMANCE_RUN")
    if given:
        return Path(given)
    for ancestor in REPO_ROOT.parents:
        candidate = ancestor / "shared" / "conformance" / "run"
        if candidate.is_file():
            return candidate
    return None


def failed_cases(junit: Path) -> list[str]:
    """``name: first line of what the suite said`` for each case that did not pass."""
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.get("status") in ("passed", "skipped"):
            continue
        said = next((e.text or "" for e in case if e.tag == "system-out"), "")
        out.append(f"{case.get('name')}: {said.strip().splitlines()[0] if said.strip() else ''}")
    return out


@pytest.mark.parametrize(
    "backend",
    [
        "filesystem",
        pytest.param("s3", marks=pytest.mark.slow),
        pytest.param("s3-redirect", marks=pytest.mark.slow),
    ],
)
def test_conformance_suite_passes(tmp_path, request, backend):
    """The whole suite on each storage backend: ``--root``, and S3 (SeaweedFS), also with
    blob GETs answered by redirects to pre-signed URLs (``--redirect``)."""
    suite = find_suite()
    if suite is None or not os.access(suite, os.X_OK):
        where = f"{REPO_ROOT.parent}/shared/conformance/run"
        if os.environ.get("CI"):
            pytest.fail(f"CI machine lacks the OCI conformance suite ({where})")
        pytest.skip(f"needs the OCI conformance suite ({where})")
    if backend.startswith("s3"):
        seaweed = request.getfixturevalue("seaweed")
        args = [*seaweed.storage_args(), *(["--redirect"] if backend == "s3-redirect" else [])]
        server = start_server(tmp_path / "registry", *args, env=seaweed.env)
    else:
        server = start_server(tmp_path / "registry")
    results = tmp_path / "results"
    try:
        done = subprocess.run(
            [str(suite), server.url, str(results)],
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        server.stop()
    junit = results / "junit.xml"
    assert junit.is_file(), f"the suite wrote no results:\n{done.stdout}\n{done.stderr}"
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    failed = failed_cases(junit)
    assert not failed, (
        f"{len(failed)} conformance case(s) failed (requests and answers in "
        f"{results / 'report.html'}):\n" + "\n".join(failed)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(c.get("status") == "passed" for c in cases), "the suite ran no case"
