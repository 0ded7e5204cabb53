"""The mutate step: an image's config edited and finished, with no build involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dockyard import reference
from dockyard.oci.config import DEFAULT_PATH
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.mutate import ImageState
from dockyard.store import Store
from dockyard.transfer.from_directory import import_directory

LAYER = Descriptor("application/vnd.oci.image.layer.v1.tar", "sha256:" + "1" * 64, 10)


def test_edits_land_in_the_config_in_dockers_shapes():
    state = ImageState.new(Platform("linux", "arm64", "v8"))
    state.set_env("A", "1")
    state.set_env("B", "2")
    state.set_env("A", "3")  # replaced, and now last
    state.set_cmd(["sh"])
    state.set_entrypoint(["/init"])
    state.set_cmd(None)
    state.add_labels({"x": "1"})
    state.add_exposed_ports(["80/tcp"])
    state.add_volumes(["/data"])
    state.add_onbuild("RUN make")
    assert state.config == {
        "Env": ["B=2", "A=3"],
        "Entrypoint": ["/init"],
        "Labels": {"x": "1"},
        "ExposedPorts": {"80/tcp": {}},
        "Volumes": {"/data": {}},
        "OnBuild": ["RUN make"],
    }
    assert (state.env, state.workdir, state.user, state.shell) == (
        {"B": "2", "A": "3"},
        "/",
        "",
        None,
    )
    assert state.take_onbuild() == ["RUN make"] and "OnBuild" not in state.config
    assert state.doc["variant"] == "v8"


def test_a_copy_is_independent_and_identity_ignores_history():
    state = ImageState.new(Platform("linux", "amd64"))
    copy = state.copy()
    copy.set_user("app")
    assert state.user == "" and state.identity() != copy.identity()
    state.set_user("app")
    state.add_history("USER app", None, empty_layer=True)
    assert state.identity() == copy.identity()  # history is not content


def test_finish_gives_a_config_blob_and_a_manifest_naming_it():
    state = ImageState.new(Platform("linux", "amd64"))
    state.add_layer(LAYER, "sha256:" + "2" * 64, "made", "2024-01-01T00:00:00Z", "why")
    config, manifest = state.finish("now")
    doc = json.loads(config)
    assert doc["created"] == "2024-01-01T00:00:00Z"  # the last history time
    assert doc["rootfs"]["diff_ids"] == ["sha256:" + "2" * 64]
    assert doc["history"] == [
        {"created": "2024-01-01T00:00:00Z", "created_by": "made", "comment": "why"}
    ]
    assert manifest.config == Descriptor.of_bytes(manifest.config.media_type, config)
    assert manifest.layers == (LAYER,)


def test_the_mutate_step_needs_no_dockerfile_frontend():
    code = (
        "import sys, dockyard.oci.mutate, dockyard.transfer.from_directory\n"
        "print(sorted(m for m in sys.modules if m.startswith('dockyard.builder')))"
    )
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stderr


def test_import_directory_makes_its_image_through_the_mutate_step(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f").write_text("hi")
    store = Store(tmp_path / "store")
    ref = reference.parse("localhost/imported:1")
    digest = import_directory(store, tmp_path / "dir", ref, compression=None, cmd=["/f"])
    manifest = store.image_manifest(store.resolve(ref), Platform.host())
    assert manifest is not None and manifest.digest == digest
    doc = store.read_config(manifest)
    assert doc["config"] == {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["/f"]}
    assert doc["created"] == "1970-01-02T00:00:00Z"
    assert doc["history"] == [
        {"created": "1970-01-02T00:00:00Z", "created_by": "dockyard import dir"}
    ]
    assert len(doc["rootfs"]["diff_ids"]) == len(manifest.layers) == 1
