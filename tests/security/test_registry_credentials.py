"""A pipeline's registry access: an untrusted ``.dockyard.yml`` gets only the registry
credentials given to its run (a ``registry_auth`` secret), never the host's own logins,
unless the operator allows them (``--allow-host-credentials``).

The registry is a real one with htpasswd auth on loopback; the host is logged in to it
(its auth file holds the credentials) in every test, as a CI machine's operator would be.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest

from dockyard.errors import RegistryError
from dockyard.registry.client import Credentials, RegistryClient
from tests.conftest import need
from tests.support.builds import directory_with
from tests.support.registry_auth import (  # noqa: F401 - fixtures
    PASSWORD,
    USER,
    auth_env,
    basic,
    basic_registry,
    write_auths,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def host_logged_in(auth_env, basic_registry) -> str:  # noqa: F811 - the imported fixtures
    """The host's auth file can push to the protected registry; its host is returned."""
    write_auths(auth_env, basic_registry.host, auth=basic(USER, PASSWORD))
    return basic_registry.host


def pipeline(tmp_path: Path, text: str, **files: str) -> Path:
    return directory_with(tmp_path, "project", {".dockyard.yml": textwrap.dedent(text), **files})


def ci_run(dockyard, directory: Path, *args: str) -> tuple[int, str, dict]:
    report = directory.parent / f"result-{uuid.uuid4().hex[:6]}.json"
    result = dockyard("ci", "run", "--json", str(report), *args, str(directory), check=False)
    out = result.stdout.decode() + result.stderr.decode()
    doc = json.loads(report.read_text()) if report.exists() else {}
    return result.returncode, out, doc


def auth_secret_file(tmp_path: Path, host: str, name: str = "REG") -> Path:
    """A --secrets-file giving ``name`` a docker config for ``host``."""
    config = json.dumps({"auths": {host: {"auth": basic(USER, PASSWORD)}}})
    path = tmp_path / f"secrets-{uuid.uuid4().hex[:6]}"
    path.write_text(f"{name}={config}\n")
    return path


def refused(reason: str) -> bool:
    """Whether a step failed because the registry wanted credentials."""
    return "authentication required" in reason or "(401)" in reason


def tag_exists(host: str, repo: str, tag: str) -> bool:
    client = RegistryClient(host, credentials=Credentials(USER, PASSWORD))
    try:
        client.get_manifest(repo, tag)
    except RegistryError as e:
        if e.status == 404:
            return False
        raise
    return True


def build_pipeline(tmp_path: Path, busybox_ref: str, target: str, registry_auth: str = "") -> Path:
    auth = f", registry_auth: {registry_auth}" if registry_auth else ""
    return pipeline(
        tmp_path,
        f"""\
        steps:
          - name: image
            build: {{context: ., tags: [{target}], push: true{auth}}}
        """,
        Dockerfile=f"FROM {busybox_ref}\nRUN echo built > /built\n",
    )


def test_a_pipeline_push_never_uses_the_hosts_login(
    dockyard, host_logged_in, busybox_ref, tmp_path
):
    """The attack: a pipeline pushes over a protected tag with the host's login."""
    repo = f"protected/{uuid.uuid4().hex[:8]}"
    target = f"{host_logged_in}/{repo}:1"
    code, out, doc = ci_run(dockyard, build_pipeline(tmp_path, busybox_ref, target))
    assert code == 1, out
    (step,) = doc["steps"]
    assert step["status"] == "failure"
    assert refused(step["reason"])
    assert not tag_exists(host_logged_in, repo, "1")


def test_a_pipeline_push_uses_its_registry_auth_secret_masked(
    dockyard, host_logged_in, busybox_ref, tmp_path, store_root
):
    repo = f"protected/{uuid.uuid4().hex[:8]}"
    target = f"{host_logged_in}/{repo}:1"
    directory = build_pipeline(tmp_path, busybox_ref, target, registry_auth="REG")
    # A step that shows what a leak would: the password, and user:password as sent.
    leak = f"echo {PASSWORD}; echo {basic(USER, PASSWORD)}"
    with (directory / ".dockyard.yml").open("a") as f:
        f.write(f"  - name: leak\n    image: {busybox_ref}\n    commands: [{json.dumps(leak)}]\n")
    secrets = auth_secret_file(tmp_path, host_logged_in)
    code, out, _ = ci_run(dockyard, directory, "--secrets-file", str(secrets))
    assert code == 0, out
    assert tag_exists(host_logged_in, repo, "1")
    logs = b"".join(p.read_bytes() for p in (store_root / "ci" / "runs").glob("*/**/*.log"))
    for text in (out.encode(), logs):
        assert PASSWORD.encode() not in text
        assert basic(USER, PASSWORD).encode() not in text
    assert "********" in out


def test_the_operator_may_allow_the_hosts_logins(dockyard, host_logged_in, busybox_ref, tmp_path):
    repo = f"trusted/{uuid.uuid4().hex[:8]}"
    directory = build_pipeline(tmp_path, busybox_ref, f"{host_logged_in}/{repo}:1")
    code, out, _ = ci_run(dockyard, directory, "--allow-host-credentials")
    assert code == 0, out
    assert tag_exists(host_logged_in, repo, "1")


def test_private_images_pull_only_with_the_runs_credentials(
    dockyard, host_logged_in, busybox_layout, busybox_ref, tmp_path
):
    """Step images (and a build's FROM): public ones pull anonymously; a private one
    only with the run's registry_auth, not because the host could pull it."""
    need("skopeo")
    private = f"{host_logged_in}/private/{uuid.uuid4().hex[:8]}:1"
    subprocess.run(
        ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"--dest-creds={USER}:{PASSWORD}",
         f"oci:{busybox_layout}:latest", f"docker://{private}"],
        check=True, capture_output=True,
    )  # fmt: skip
    text = f"""\
        steps:
          - name: public
            image: {busybox_ref}
            commands: [echo public]
          - name: private
            image: {private}
            commands: [echo private]
          - name: built
            build: {{context: .}}
        """
    files = {"Dockerfile": f"FROM {private}\nRUN true\n"}
    without = pipeline(tmp_path, text, **files)
    code, out, doc = ci_run(dockyard, without)
    assert code == 1, out
    status = {s["name"]: s for s in doc["steps"]}
    assert status["public"]["status"] == "success"
    for name in ("private", "built"):
        assert status[name]["status"] == "failure", out
        assert refused(status[name]["reason"]), status[name]["reason"]
    with_auth = pipeline(tmp_path, "registry_auth: REG\n" + textwrap.dedent(text), **files)
    secrets = auth_secret_file(tmp_path, host_logged_in)
    code, out, _ = ci_run(dockyard, with_auth, "--secrets-file", str(secrets))
    assert code == 0, out


def test_a_registry_auth_secret_must_be_a_docker_config_without_helpers(
    dockyard, host_logged_in, tmp_path
):
    directory = pipeline(tmp_path, "registry_auth: REG\nsteps: [{name: a, image: x/y}]\n")
    for value in ("alice:hunter2", json.dumps({"auths": {}, "credsStore": "pass"})):
        code, out, _ = ci_run(dockyard, directory, "--secret", f"REG={value}")
        assert code == 1
        assert "secret REG" in out and "hunter2" not in out
    code, out, _ = ci_run(dockyard, directory)
    assert code == 1
    assert "secrets not given: REG" in out
