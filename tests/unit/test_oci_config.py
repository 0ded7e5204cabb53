"""The typed read view of an image config: fields as types, the document untouched."""

from __future__ import annotations

import copy
import json

from dockyard.oci.config import HistoryEntry, ImageConfig
from dockyard.oci.manifest import parse_config

DIFF = "sha256:" + "a" * 64
DOC = {
    "created": "2026-01-02T03:04:05Z",
    "architecture": "arm64",
    "os": "linux",
    "variant": "v8",
    "config": {
        "Env": ["PATH=/usr/bin", "LANG=C"],
        "Entrypoint": ["/entry.sh"],
        "Cmd": ["serve"],
        "User": "app:app",
        "WorkingDir": "/srv",
        "Labels": {"org.example": "yes", "bad": 5},
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}},
        "StopSignal": "SIGINT",
        "Healthcheck": {"Test": ["CMD", "true"]},
    },
    "rootfs": {"type": "layers", "diff_ids": [DIFF]},
    "history": [
        {"created": "2026-01-01T00:00:00Z", "created_by": "ADD rootfs", "comment": "base"},
        {"created_by": "ENV LANG=C", "empty_layer": True},
        "not an entry",
    ],
}


def test_every_field_reads_as_its_type():
    config = ImageConfig(parse_config(json.dumps(DOC).encode()))
    assert config.diff_ids == (DIFF,)
    assert (config.os, config.architecture, config.variant) == ("linux", "arm64", "v8")
    assert config.created == "2026-01-02T03:04:05Z"
    assert config.env == ("PATH=/usr/bin", "LANG=C")
    assert (config.entrypoint, config.cmd) == (("/entry.sh",), ("serve",))
    assert (config.user, config.working_dir) == ("app:app", "/srv")
    assert config.labels == {"org.example": "yes"}  # a value that is not text is no label
    assert config.exposed_ports == ("8080/tcp", "53/udp")
    assert config.volumes == ("/data",)
    assert config.stop_signal == "SIGINT"
    assert config.healthcheck == ("CMD", "true")
    assert config.history == (
        HistoryEntry("2026-01-01T00:00:00Z", "ADD rootfs", "", "base", False),
        HistoryEntry("", "ENV LANG=C", "", "", True),
    )


def test_reading_never_changes_the_document():
    doc = copy.deepcopy(DOC)
    config = ImageConfig(doc)
    config.labels["new"] = "x"
    _ = (config.env, config.history, config.diff_ids, config.exposed_ports)
    assert doc == DOC


def test_absent_or_mistyped_fields_read_as_empty():
    empty = ImageConfig({})
    assert (empty.diff_ids, empty.env, empty.cmd, empty.entrypoint) == ((), (), (), ())
    assert (empty.user, empty.working_dir, empty.os, empty.architecture) == ("", "", "", "")
    assert (empty.variant, empty.created, empty.stop_signal) == (None, None, None)
    assert (empty.labels, empty.exposed_ports, empty.history, empty.healthcheck) == ({}, (), (), ())
    odd = ImageConfig(
        {
            "config": {"Env": "PATH=/x", "User": 0, "Cmd": ["sh", 1], "Labels": ["a"]},
            "rootfs": {"diff_ids": [DIFF, 7]},
            "history": {"created_by": "x"},
        }
    )
    assert (odd.env, odd.user, odd.labels, odd.history) == ((), "", {}, ())
    assert odd.cmd == ("sh", "1")  # nothing in a list is skipped unseen
    assert odd.diff_ids == ()
    assert ImageConfig({"config": None}).env == ()
