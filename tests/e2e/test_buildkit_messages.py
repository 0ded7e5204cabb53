"""What users read: BuildKit's messages and step names, and two context conventions.

Our own versions of BuildKit's Dockerfile frontend tests (moby/buildkit
``frontend/dockerfile/dockerfile_*_test.go``) named after them, on a busybox base: the
error texts people and scripts grep for, the "did you mean" suggestions, the
``[stage n/N]`` step lines, a lower-case ``dockerfile``, and sockets in the context.
"""

from __future__ import annotations

import hashlib
import socket
import stat
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.support.builds import directory_with

pytestmark = pytest.mark.e2e


def context_with(tmp_path: Path, dockerfile: str, name: str = "Dockerfile") -> Path:
    files = {name: textwrap.dedent(dockerfile), "foo": "foo-contents"}
    return directory_with(tmp_path, "ctx", files)


def failed_build(dockyard, context: Path, *args: str) -> str:
    """The stderr of a build of ``context`` that must fail with a one-line-headed error."""
    result = dockyard("build", *args, str(context), check=False)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    return stderr


def test_dockerfile_invalid_command(dockyard, busybox_ref, tmp_path):
    """testDockerfileInvalidCommand: the command as run, and BuildKit's wording."""
    context = context_with(tmp_path, f"FROM {busybox_ref}\nRUN invalidcmd\n")
    stderr = failed_build(dockyard, context)
    assert (
        f'{context}/Dockerfile:2: process "/bin/sh -c invalidcmd" did not complete '
        "successfully: exit code: 127"
    ) in stderr


def test_dockerfile_invalid_instruction(dockyard, tmp_path):
    """testDockerfileInvalidInstruction."""
    context = context_with(
        tmp_path, 'FROM scratch\nFNTRYPOINT ["/bin/sh", "-c", "echo invalidinstruction"]\n'
    )
    stderr = failed_build(dockyard, context)
    assert stderr.strip().count("\n") == 0
    assert (
        f"{context}/Dockerfile:2: unknown instruction: FNTRYPOINT (did you mean ENTRYPOINT?)"
    ) in stderr


@pytest.mark.parametrize(
    ("run", "message", "fix"),
    [
        ("RUN --mont=target=/mytmp,type=tmpfs /bin/true", "unknown flag: --mont", "mount"),
        ("RUN --mount=typ=tmpfs /bin/true", "unexpected key 'typ' in 'typ=tmpfs'", "type"),
        ("RUN --mount=type=tmp /bin/true", 'unsupported mount type "tmp"', "tmpfs"),
    ],
)
def test_mount_invalid(dockyard, tmp_path, run, message, fix):
    """testMountInvalid: a misspelt flag, mount key and mount type, each with its fix."""
    context = context_with(tmp_path, f"FROM scratch\n{run}\n")
    stderr = failed_build(dockyard, context)
    assert f"{context}/Dockerfile:2: {message} (did you mean {fix}?)" in stderr


def test_target_mistype(dockyard, tmp_path):
    """testTargetMistype."""
    context = context_with(
        tmp_path,
        """\
        FROM scratch AS build
        COPY Dockerfile /out

        FROM scratch
        COPY --from=build /out /
        """,
    )
    stderr = failed_build(dockyard, context, "--target", "bulid")
    assert 'target stage "bulid" could not be found (did you mean build?)' in stderr


def test_secret_required_without_value(dockyard, busybox_ref, tmp_path):
    """testSecretRequiredWithoutValue."""
    context = context_with(
        tmp_path, f"FROM {busybox_ref}\nRUN --mount=type=secret,required,id=mysecret foo\n"
    )
    stderr = failed_build(dockyard, context)
    assert f"{context}/Dockerfile:2: secret mysecret: not found" in stderr


@pytest.mark.parametrize("keyword", ["COPY", "ADD"])
@pytest.mark.parametrize("chmod", ["64a", "10000"])
def test_copy_and_add_invalid_chmod(dockyard, tmp_path, keyword, chmod):
    """testCopyInvalidChmod, testAddInvalidChmod."""
    context = context_with(tmp_path, f"FROM scratch\n{keyword} --chmod={chmod} foo /\n")
    stderr = failed_build(dockyard, context)
    assert (
        f"invalid chmod parameter: '{chmod}'. it should be octal string and between 0 and 07777"
    ) in stderr


def test_step_names(dockyard, busybox_ref, tmp_path):
    """testStepNames: the FROM of an image is step 1 of its stage."""
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref} AS base
        WORKDIR /out
        RUN echo "base" > base
        FROM scratch
        COPY --from=base --chmod=0644 /out /out
        """,
    )
    log = dockyard("build", "-t", "localhost/t/steps:1", str(context)).stderr.decode()
    lines = log.splitlines()
    assert f"[base 1/3] FROM {busybox_ref}" in lines
    assert '[base 3/3] RUN echo "base" > base' in lines
    assert "[stage-1 1/1] COPY --from=base --chmod=0644 /out /out" in lines


def test_secret_as_environ(dockyard, busybox_ref, tmp_path):
    """testSecretAsEnviron: the secret is in the variable, no file is left, and the step
    name shows the variable masked: neither the secret nor the ENV value before it."""
    value = "pw-" + uuid.uuid4().hex
    secret = tmp_path / "secret"
    secret.write_text(value)
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        ENV SECRET_ENV=foo
        RUN --mount=type=secret,id=mysecret,env=SECRET_ENV [ "$SECRET_ENV" != "foo" ] && \\
            [ ! -f /run/secrets/mysecret ] && echo "$SECRET_ENV" | md5sum > /sum
        """,
    )
    result = dockyard(
        "build", "--secret", f"id=mysecret,src={secret}", "-t", "localhost/t/env:1", str(context)
    )
    log = result.stderr.decode()
    step = next(line for line in log.splitlines() if "/run/secrets/mysecret" in line)
    assert step.startswith("[2/2] RUN --mount=type=secret,id=mysecret,env=SECRET_ENV")
    assert '[ "****" != "foo" ]' in step
    assert value not in log
    rootfs = tmp_path / "rootfs"
    dockyard("export", "localhost/t/env:1", str(rootfs))
    expected = hashlib.md5(f"{value}\n".encode()).hexdigest()
    assert (rootfs / "sum").read_text().split()[0] == expected


def test_dockerfile_lowercase(dockyard, tmp_path):
    """testDockerfileLowercase: a context with only ``dockerfile`` builds; its errors
    name that file."""
    context = context_with(tmp_path, "FROM scratch\nCOPY foo /\n", name="dockerfile")
    dockyard("build", "-q", "-t", "localhost/t/lower:1", str(context))
    (context / "dockerfile").write_text("FROM scratch\nCOPPY foo /\n")
    stderr = failed_build(dockyard, context)
    assert f"{context}/dockerfile:2: unknown instruction: COPPY (did you mean COPY?)" in stderr


def test_copy_socket(dockyard, tmp_path, monkeypatch):
    """testCopySocket: a Unix socket in the context arrives as an empty regular file."""
    context = context_with(tmp_path, "FROM scratch\nCOPY . /\n")
    monkeypatch.chdir(context)  # bound by a relative name: tmp paths can be too long
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("socket.sock")
        dockyard("build", "-q", "-t", "localhost/t/socket:1", str(context))
    rootfs = tmp_path / "rootfs"
    dockyard("export", "localhost/t/socket:1", str(rootfs))
    st = (rootfs / "socket.sock").lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert (rootfs / "foo").read_text() == "foo-contents"
