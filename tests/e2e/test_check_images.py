"""``dockyard check`` on real images: built on busybox by ``dockyard build`` (a planted
private key deleted by a later RUN, a setuid binary, a root user, a wrong base, a
missing label), read from the store and streamed from a registry; and a clean Debian
image, which must give no finding."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid

import pytest

pytestmark = pytest.mark.e2e

GATE = """\
user: {}
base: {allowed: [%(base)s]}
labels: {required: {org.opencontainers.image.source: "^https://"}}
secrets: {}
files: {setuid_allowed: [/bin/passwd]}
"""


@pytest.fixture
def planted(dockyard, busybox_ref, docker_registry, tmp_path):
    """A busybox-based image pushed to the session registry, with every problem."""
    context = tmp_path / "ctx"
    context.mkdir()
    key = context / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (context / "Dockerfile").write_text(
        textwrap.dedent(
            f"""\
            FROM {busybox_ref}
            COPY id_ed25519 /root/.ssh/id_ed25519
            RUN cat /root/.ssh/id_ed25519 > /dev/null && rm /root/.ssh/id_ed25519
            RUN cp /bin/busybox /bin/suid-busybox && chmod u+s /bin/suid-busybox
            LABEL team=gate
            """
        )
    )
    ref = f"{docker_registry.host}/t{uuid.uuid4().hex[:8]}/gate:1"
    dockyard("build", "-q", "-t", ref, str(context))
    dockyard("push", "--progress", "quiet", ref)
    return ref


def findings(result: subprocess.CompletedProcess) -> list[tuple]:
    doc = json.loads(result.stdout)
    return [(f["rule"], f["layer"], f["path"], f["message"]) for f in doc[0]["findings"]]


def test_planted_problems_are_found_with_layer_and_path(dockyard, planted, tmp_path):
    other_base = tmp_path / "other"
    (other_base / "etc").mkdir(parents=True)
    (other_base / "etc/os-release").write_text("ID=other\n")
    dockyard("import", str(other_base), "localhost/t/otherbase:1")
    policy = tmp_path / "gate.yml"
    policy.write_text(GATE % {"base": "localhost/t/otherbase:1"})
    expected = [
        ("user", None, None, "no USER: runs as root"),
        ("base", 1, None, "does not start with the layers of an allowed base "
         "(localhost/t/otherbase:1)"),
        ("labels", None, None, "label org.opencontainers.image.source is missing"),
        ("secrets", 2, "/root/.ssh/id_ed25519", "private key"),
        ("files", 4, "/bin/suid-busybox", "setuid file (mode 4755)"),
    ]  # fmt: skip
    local = dockyard("check", "--policy", str(policy), "--format", "json", planted, check=False)
    assert local.returncode == 1
    assert findings(local) == expected
    assert json.loads(local.stdout)[0]["findings"][3]["deleted_in_layer"] == 3
    # The same image, streamed from the registry by a store that never pulled it.
    dockyard("rmi", planted)
    dockyard("prune")
    remote = dockyard(
        "check", "--policy", str(policy), "--format", "json", f"docker://{planted}", check=False
    )
    assert findings(remote) == expected
    text = dockyard("check", "--policy", str(policy), f"docker://{planted}", check=False)
    assert (
        "/root/.ssh/id_ed25519 (deleted in layer 3, still shipped): private key"
        in text.stdout.decode()
    )


def test_the_right_base_passes(dockyard, planted, busybox_ref, tmp_path):
    policy = tmp_path / "base.yml"
    policy.write_text(f"base: {{allowed: [docker://{busybox_ref}]}}\n")
    assert dockyard("check", "--policy", str(policy), planted).returncode == 0


# Debian's own setuid/setgid programs (shadow, util-linux): a policy for Debian lists them.
DEBIAN_POLICY = """\
user: {allow_root: true}
max_layers: {max: 1}
secrets: {}
files:
  forbidden: ["/root/.ssh/*", "*.pem", "*id_rsa*", "/root/.aws/*"]
  setuid_allowed: [/usr/bin/chage, /usr/bin/chfn, /usr/bin/chsh, /usr/bin/expiry,
                   /usr/bin/gpasswd, /usr/bin/mount, /usr/bin/newgrp, /usr/bin/passwd,
                   /usr/bin/su, /usr/bin/umount, /usr/sbin/unix_chkpwd]
config: {forbidden_env: ["*_TOKEN", "*PASSWORD*", "*SECRET*"]}
packages: {deny: ["openssl <3.0.7", telnet, "libc6 <2.36"]}
"""


@pytest.mark.slow
def test_clean_debian_has_no_finding(dockyard, debian_ref, tmp_path):
    policy = tmp_path / "debian.yml"
    policy.write_text(DEBIAN_POLICY)
    result = dockyard("check", "--policy", str(policy), debian_ref, check=False)
    assert result.stdout.decode().splitlines() == [f"{debian_ref}: PASS (0 errors, 0 warnings)"]
    assert result.returncode == 0


def test_layers_and_diff_of_a_real_build(dockyard, planted, busybox_ref, tmp_path):
    doc = json.loads(dockyard("inspect", "--layers", "--format", "json", planted).stdout)
    layers = doc["layers"]
    assert len(layers) == 4
    assert layers[1]["created_by"].startswith("COPY id_ed25519")
    assert layers[1]["files_added"] == 1 and layers[1]["wasted_bytes"] == layers[1]["file_bytes"]
    assert layers[2]["files_deleted"] == 1  # the RUN that removed the key
    busybox_size = layers[0]["file_bytes"] - layers[0]["wasted_bytes"]
    assert any(f["path"] == "/bin/suid-busybox" and f["layer"] == 4 for f in doc["largest_files"])
    assert doc["wasted_bytes"] == layers[1]["wasted_bytes"] and busybox_size > 0
    svg = tmp_path / "layers.svg"
    dockyard("inspect", "--layers", "--svg", str(svg), f"docker://{planted}")
    assert svg.read_text().count("<rect") == 2 * 4 + 2  # kept and wasted per layer, legend
    lines = dockyard("diff", f"docker://{busybox_ref}", planted).stdout.decode().splitlines()
    assert "A /bin/suid-busybox" in lines and "A /root/.ssh" in lines
    assert not any("id_ed25519" in line for line in lines)  # deleted: not in the image
