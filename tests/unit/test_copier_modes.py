"""--chmod (octal and symbolic, as tonistiigi/dchapes-mode applies it) and --chown
resolution (BuildKit's llb.WithUser + readUser), without writing any copies."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest

from dockyard.builder.copier.modes import Chmod, ModeSet, resolve_owner

FILE = stat.S_IFREG
DIR = stat.S_IFDIR


@pytest.mark.parametrize(
    ("spec", "before", "after"),
    [
        ("u+x", FILE | 0o644, 0o744),
        ("go-w", FILE | 0o666, 0o644),
        ("a=r", FILE | 0o777, 0o444),
        ("=", FILE | 0o4777, 0o000),
        ("+x", FILE | 0o600, 0o711),
        ("u=rw,go=r", FILE | 0o777, 0o644),
        ("u+s", FILE | 0o755, 0o4755),
        ("g+s,o+t", FILE | 0o755, 0o2755),  # "t" for others alone is ignored
        ("+t", DIR | 0o777, 0o1777),
        ("g=u", FILE | 0o750, 0o770),
        ("o=g-w", FILE | 0o674, 0o675),
        ("u-x+w", FILE | 0o500, 0o600),
        ("a+X", FILE | 0o644, 0o644),
        ("a+X", FILE | 0o744, 0o755),
        ("a+X", DIR | 0o600, 0o711),
        ("go=rX", DIR | 0o700, 0o744),  # dchapes-mode: X only counts with "+"
        ("u=rwX,go=", DIR | 0o777, 0o600),
    ],
)
def test_symbolic_modes(spec, before, after):
    assert ModeSet(spec).apply(before) == after


@pytest.mark.skipif(shutil.which("chmod") is None, reason="no chmod(1)")
@pytest.mark.parametrize(
    "spec", ["u+x", "go-w", "a=r", "ug+rw,o-rwx", "g=u", "o=g", "u-x+w", "+X", "a+rX", "u+s,g+s"]
)
@pytest.mark.parametrize("before", [0o644, 0o751, 0o600, 0o4755])
def test_symbolic_modes_agree_with_chmod_1(tmp_path, spec, before):
    path = tmp_path / "f"
    path.touch()
    path.chmod(before)
    subprocess.run(["sh", "-c", f"umask 0; chmod {spec} {path}"], check=True)
    assert ModeSet(spec).apply(FILE | before) == stat.S_IMODE(path.stat().st_mode)


def test_octal_and_invalid_modes():
    chmod = Chmod.parse("4755")
    assert chmod is not None
    assert chmod.apply(FILE | 0o600) == 0o4755 and chmod.dir_mode == 0o755
    assert Chmod.parse("") is None
    assert Chmod.parse("u+x").dir_mode == 0o755  # type: ignore[union-attr]
    for bad in ("8", "17777", "u+z", "u", "+x,"):
        with pytest.raises(ValueError, match="invalid chmod parameter"):
            Chmod.parse(bad)
    for numeric in ("64a", "8", "0o7", "17777"):  # BuildKit: starts with a digit, so octal
        with pytest.raises(ValueError, match="it should be octal string and between 0 and"):
            Chmod.parse(numeric)


@pytest.fixture
def rootfs(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "# comment\nroot:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n"
    )
    (tmp_path / "etc/group").write_text("root:x:0:\napp:x:1001:\nstaff:x:50:app\n")
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", None),
        ("root", (0, 0)),
        ("0", (0, 0)),
        ("1000", (1000, 1000)),
        ("app", (1000, 1001)),
        ("app:staff", (1000, 50)),
        ("app:7", (1000, 7)),
        (":staff", (0, 50)),
        ("app:", (1000, 0)),
        ("4242:root", (4242, 0)),
    ],
)
def test_owners(rootfs, spec, expected):
    assert resolve_owner(spec, rootfs, strict=True) == expected


def test_unknown_names(rootfs, tmp_path):
    with pytest.raises(ValueError, match="unable to find user ghost"):
        resolve_owner("ghost", rootfs, strict=True)
    with pytest.raises(ValueError, match="unable to find group ghosts"):
        resolve_owner("app:ghosts", rootfs, strict=True)
    assert resolve_owner("ghost:ghosts", rootfs, strict=False) == (0, 0)  # BuildKit's way
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_owner("12:34", empty, strict=True) == (12, 34)  # ids need no files
