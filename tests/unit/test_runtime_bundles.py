"""Bundle files: private from their creation, never written through a planted link."""

from __future__ import annotations

import stat

import pytest

from dockyard.runtime import bundles
from dockyard.runtime.config import Mount


def test_create_makes_the_bundle_and_its_parent_private(tmp_path):
    parent = tmp_path / "bundles"
    parent.mkdir(mode=0o755)  # as an older dockyard left it
    bundles.create(parent / "dockyard-1")
    for path in (parent, parent / "dockyard-1"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    with pytest.raises(FileExistsError):
        bundles.create(parent / "dockyard-1")


def test_write_private_refuses_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "config.json").symlink_to(victim)
    with pytest.raises(FileExistsError):
        bundles.write_private(tmp_path / "config.json", b"secret")
    assert victim.read_text() == "untouched"


def test_stage_files_writes_file_mounts_with_their_owner_and_mode(tmp_path):
    mounts = [
        Mount.bind("/src", "/dst"),
        Mount.file(b"value", "/run/secrets/a", uid=1234, gid=99, mode=0o4440),
    ]
    staged = bundles.stage_files(tmp_path, mounts)
    assert staged[0] == mounts[0]
    assert staged[1].type == "bind" and staged[1].readonly
    assert staged[1].destination == "/run/secrets/a"
    info = (tmp_path / bundles.STAGED / "1").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 99, 0o440)
    assert (tmp_path / bundles.STAGED / "1").read_bytes() == b"value"
    assert stat.S_IMODE((tmp_path / bundles.STAGED).stat().st_mode) == 0o700
    assert "value" not in repr(mounts[1])  # a secret never shows in a repr or log


def test_a_symlink_in_place_of_bundles_is_refused_and_its_target_left_alone(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    victim.chmod(0o755)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "bundles").symlink_to(victim)
    with pytest.raises(OSError):
        bundles.create(tmp_path / "store" / "bundles" / "c1")
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755
    assert list(victim.iterdir()) == []
