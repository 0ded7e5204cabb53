"""Hostile images and policies against ``dockyard check``, ``inspect --layers`` and
``diff``: they read layers as streams and must never touch the host's files, expand
a bomb past the layer limits, hold a huge file in memory or crash on a bad policy."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc

import pytest

from dockyard.check.image import open_image
from dockyard.check.policy import PolicyError, parse_policy
from dockyard.check.run import check_image
from dockyard.layers.limits import SIZE_VAR
from tests.conftest import Dockyard
from tests.unit.check_images import FAKE_KEY, F, d, layer, store_image


def test_links_to_host_files_are_never_followed(store_root, tmp_path):
    victim = tmp_path / "host" / "id_rsa"  # a sacrificial "host" key
    victim.parent.mkdir()
    victim.write_bytes(FAKE_KEY)
    tars = [
        layer(
            d("/root"),
            F("/root/key", kind=tarfile.SYMTYPE, link=str(victim)),
            F("/root/hard", kind=tarfile.LNKTYPE, link=str(victim)),
            F(f"/../../..{victim.parent}/notes", b"harmless\n"),  # climbs: stays in the image
        )
    ]
    name = store_image(store_root, "localhost/t/links:1", tars)
    result = Dockyard(store_root)("check", "--policy", str(_policy(tmp_path)), name)
    assert result.stdout.decode().splitlines() == [f"{name}: PASS (0 errors, 0 warnings)"]
    assert victim.read_bytes() == FAKE_KEY  # untouched
    diff = Dockyard(store_root)("diff", name, name).stdout
    assert diff == b""


def _policy(tmp_path):
    policy = tmp_path / "policy.yml"
    policy.write_text("secrets: {}\nfiles: {forbidden: ['*/id_rsa']}\n")
    return policy


def test_a_gzip_bomb_stops_at_the_layer_limit(store_root, tmp_path):
    bomb = io.BytesIO()
    with tarfile.open(fileobj=bomb, mode="w") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    name = store_image(store_root, "localhost/t/bomb:1", [bomb.getvalue()])
    assert len(gzip.compress(bomb.getvalue())) < 1 << 20
    result = Dockyard(store_root)(
        "check", "--policy", str(_policy(tmp_path)), name, check=False, env={SIZE_VAR: "8M"}
    )
    assert result.returncode == 1
    error = result.stderr.decode().strip()
    assert (
        error.startswith("dockyard: error: layer 1 (sha256:") and "expands to more than 8" in error
    )
    assert len(error.splitlines()) == 1
    inspect = Dockyard(store_root)("inspect", "--layers", name, check=False, env={SIZE_VAR: "8M"})
    assert inspect.returncode == 1 and b"expands to more than" in inspect.stderr


def test_a_huge_text_file_is_read_only_as_far_as_the_policy_says(store_root):
    big = b"A" * (48 << 20) + FAKE_KEY  # the key past the first MiB: not read, not held
    name = store_image(store_root, "localhost/t/huge:1", [layer(F("/log.txt", big))])
    policy = parse_policy("secrets: {}\n", "p.yml")
    opened = open_image(name, store_root=store_root)
    tracemalloc.start()
    result = check_image(opened, policy, lambda n: open_image(n, store_root=store_root))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.findings == []
    assert peak < 16 << 20  # the 48 MiB file is streamed past, never held


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: &a [1,2,3,4,5,6,7,8,9]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
         "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
         "e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
         "p.yml:1: document too large"),
        ("secrets: " + "[" * 200 + "]" * 200 + "\n", "p.yml:1: nested deeper than 100 levels"),
        ("user: {}\nuser: {}\n", "p.yml:2: duplicate key 'user'"),
        ("labels: {required: {x: '('}}\n", "p.yml:1: labels.required.x: invalid regular"),
    ],
)  # fmt: skip
def test_hostile_policy_files_are_one_line_errors(text, expected):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yml")
    assert str(caught.value).startswith(expected)
