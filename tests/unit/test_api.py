"""The library as a user calls it: ``import dockyard`` and its verbs, no CLI.

What needs no registry and no runtime is here: the exports, the transport locations,
copies between every file home and the store, prune. Pulls, pushes, builds and runs
are in ``tests/e2e/test_api.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest

import dockyard
from dockyard.reference import parse
from dockyard.transfer.from_directory import import_directory
from dockyard.transfer.transports import (
    DockerArchiveLocation,
    LayoutLocation,
    OCIArchiveLocation,
    RegistryLocation,
    StoreLocation,
)

REF = "localhost/api/files:1"


@pytest.fixture
def stored(store_root, tmp_path) -> dockyard.Store:
    """A store holding ``REF``: one layer with ``/hello.txt``."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "hello.txt").write_text("hello\n")
    store = dockyard.Store(store_root)
    import_directory(store, tree, parse(REF), cmd=["/hello.txt"])
    return store


def test_import_dockyard_imports_no_verb_until_one_is_used():
    code = (
        "import sys, dockyard\n"
        "before = sorted(m for m in sys.modules if m.startswith('dockyard'))\n"
        "dockyard.copy\n"
        "print(before, 'dockyard.transfer.copy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout
    assert out.decode().strip() == "['dockyard', 'dockyard.lazy'] True"


def test_container_commands_import_no_copy_no_frontend_and_no_collector(stored):
    # ``container create`` and ``dockyard run`` of a stored image, ``container commit`` without
    # ``--change`` and the snapshots of every container command pay for none of them: ~10,
    # ~15 and ~3 ms.
    code = (
        "import sys\n"
        "import dockyard.runtime.snapshots\n"
        "from dockyard.containers.commit import parse_changes\n"
        "from dockyard.reference import parse\n"
        "from dockyard.runtime.rootfs import stored_image\n"
        "from dockyard.store import Store\n"
        f"image = stored_image(Store({str(stored.root)!r}), parse({REF!r}))\n"
        "assert image.config['config']['Cmd'] == ['/hello.txt'] and parse_changes(()) == []\n"
        "print(sorted(m for m in sys.modules if m in "
        "('dockyard.transfer.copy', 'dockyard.builder.frontend.parser', 'dockyard.store.gc')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_every_exported_name_resolves_and_errors_share_one_base():
    for name in dockyard.__all__:
        assert getattr(dockyard, name) is not None, name
    assert issubclass(dockyard.NotFound, dockyard.DockyardError)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dockyard.nope  # noqa: B018


@pytest.mark.parametrize(
    ("text", "kind", "shown"),
    [
        ("docker://localhost:5000/a/b:1", RegistryLocation, "docker://localhost:5000/a/b:1"),
        ("local:localhost/a:1", StoreLocation, "local:localhost/a:1"),
        ("localhost/a:1", StoreLocation, "local:localhost/a:1"),
        ("oci:/tmp/d:v1", LayoutLocation, "oci:/tmp/d:v1"),
        ("oci-archive:/tmp/a.tar", OCIArchiveLocation, "oci-archive:/tmp/a.tar"),
        (
            "docker-archive:/tmp/a.tar:x/y:1",
            DockerArchiveLocation,
            "docker-archive:/tmp/a.tar:x/y:1",
        ),
    ],
)
def test_a_transport_string_is_one_location_kind(text, kind, shown):
    location = dockyard.parse_location(text)
    assert type(location) is kind
    assert str(location) == shown


def test_a_bad_transport_string_is_an_invalid_reference():
    for text in ("docker:busybox", "oci:", "docker-archive:/a.tar:Not Valid"):
        with pytest.raises(dockyard.InvalidReference):
            dockyard.parse_location(text)


def test_copy_goes_through_every_file_home_and_back_to_the_store(stored, tmp_path):
    digest = stored.resolve(parse(REF)).digest
    layout, oci_tar, docker_tar = tmp_path / "layout", tmp_path / "o.tar", tmp_path / "d.tar"
    kept = dockyard.copy(REF, f"oci:{layout}:v1", store=stored, preserve_digests=True)
    assert kept.digest == digest  # preserved: the same manifest, byte for byte
    dockyard.copy(f"oci:{layout}:v1", f"oci-archive:{oci_tar}:v2", store=stored)
    dockyard.copy(f"oci-archive:{oci_tar}:v2", f"docker-archive:{docker_tar}:{REF}")
    back = dockyard.copy(f"docker-archive:{docker_tar}", "local:localhost/api/back:1", store=stored)
    assert stored.resolve(parse("localhost/api/back:1")).digest == back.digest
    with tarfile.open(docker_tar) as tar:
        assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] == [REF]
    source = dockyard.open_source("localhost/api/back:1", store_root=stored.root)
    assert (
        source.root_manifest().data
        == stored.source(parse("localhost/api/back:1")).root_manifest().data
    )


def test_copy_of_a_missing_image_is_not_found(stored, tmp_path):
    with pytest.raises(dockyard.NotFound):
        dockyard.copy(f"oci:{tmp_path / 'nothing'}:x", "local:localhost/api/x:1", store=stored)
    with pytest.raises(dockyard.NotFound):
        dockyard.copy("localhost/api/missing:1", f"oci:{tmp_path / 'out'}", store=stored)
    assert not (tmp_path / "out").exists()


def test_prune_takes_what_no_name_needs_and_a_dry_run_nothing(stored):
    name = parse(REF)
    stored.untag(name)
    planned = dockyard.prune(stored, dry_run=True)
    doomed = {item.name for item in planned.report.removed["blobs"]}
    assert len(doomed) == 3  # the layer, the config, the manifest
    assert all(stored.blobs.has(digest) for digest in doomed)
    summary = dockyard.prune(stored.root)
    assert {item.name for item in summary.report.removed["blobs"]} == doomed
    assert not any(stored.blobs.has(digest) for digest in doomed)
    assert dockyard.prune(stored).report.removed["blobs"] == []


def test_build_outputs_are_checked_when_made():
    with pytest.raises(ValueError, match="needs a dest"):
        dockyard.Output("oci-archive")
    with pytest.raises(ValueError, match="tarball"):
        dockyard.Output("local", "-")
    with pytest.raises(ValueError, match="unknown output kind"):
        dockyard.Output("zip", "x")


def test_a_push_with_no_tag_is_refused_before_building(tmp_path, store_root):
    with pytest.raises(dockyard.DockyardError, match="needs at least one tag"):
        dockyard.build(tmp_path / "missing", store=store_root, push=True)
    assert list(store_root.iterdir()) == []
