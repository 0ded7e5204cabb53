"""What goes into build cache keys and records, and the image times derived from them
(the end-to-end versions are in tests/e2e/test_buildkit_semantics.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.builder import copier
from dockyard.builder.builder import BuildOptions, _source_date_epoch
from dockyard.builder.cache import BuildCache, CacheRecord
from dockyard.errors import BuildError
from dockyard.oci.descriptor import Platform
from dockyard.oci.mutate import ImageState, _fill_history_times
from tests.support.copier import instruction


def from_key(text: str, root: Path) -> dict:
    with copier.plan_copy(instruction(text), None, root) as plan:
        return plan.key


def test_copy_parents_key_has_what_follows_the_pivot(tmp_path):
    """``/x/./A`` and ``/x/./B`` resolve to the same parent: the key must still differ,
    since it also names the memo of the ``--from`` content digest."""
    for name in ("A", "B", "C1", "C2"):
        (tmp_path / "x" / name).mkdir(parents=True)
    keys = [
        json.dumps(from_key(f"COPY --from=s --parents {source} /out/", tmp_path))
        for source in ("/x/./A", "/x/./B", "/x/./C*", "/x/./*", "/x/A")
    ]
    assert len(set(keys)) == len(keys)
    assert from_key("COPY --from=s --parents /x/./A /out/", tmp_path) == from_key(
        "COPY --from=s --parents /x/./A /out/", tmp_path
    )


def test_history_times_are_filled_as_buildkit_does():
    history = [
        {"created": "base-1"},
        {},  # metadata steps before the first new layer take its time
        {},
        {"created": "layer-1"},
        {},  # later ones the previous entry's
        {"created": "layer-2"},
        {},
    ]
    assert _fill_history_times(history) == "layer-2"
    assert [h.get("created") for h in history] == [
        "base-1",
        "layer-1",
        "layer-1",
        "layer-1",
        "layer-1",
        "layer-2",
        "layer-2",
    ]
    only_metadata = [{"created": "base"}, {}]
    assert _fill_history_times(only_metadata) == "base"
    assert _fill_history_times([{}, {}]) is None


def test_image_created_is_its_last_history_time_unless_fixed():
    state = ImageState.new(Platform("linux", "amd64"))
    state.add_history("ENV a=b", None, empty_layer=True)
    config, _ = state.finish("now")
    assert json.loads(config)["created"] == "now"  # no time anywhere: now
    state = ImageState.new(Platform("linux", "amd64"))
    state.add_history("RUN x", "2024-01-01T00:00:00Z", empty_layer=True)
    state.add_history("ENV a=b", None, empty_layer=True)
    doc = json.loads(state.finish("now")[0])
    assert doc["created"] == "2024-01-01T00:00:00Z"
    assert next(iter(doc["history"][1])) == "created"  # docker's key order
    assert json.loads(state.finish("epoch", fixed=True)[0])["created"] == "epoch"


def test_cache_records_keep_their_time_and_drop_a_bad_one(tmp_path):
    cache = BuildCache(tmp_path)
    cache.put(CacheRecord("k1", None, None, created="2024-01-01T00:00:00Z"))
    record, _ = cache.get("k1")
    assert record.created == "2024-01-01T00:00:00Z"
    for bad in ("x" * 100, "not a time", 5, None):
        (cache.directory / "k2").write_text(json.dumps({"layer": None, "created": bad}))
        record, _ = cache.get("k2")
        assert record.created is None


@pytest.mark.parametrize(
    ("args", "option", "expected"),
    [
        ({}, None, None),
        ({}, 5, 5),
        ({"SOURCE_DATE_EPOCH": "1673364896"}, None, 1673364896),
        ({"SOURCE_DATE_EPOCH": "7"}, 5, 7),  # the build arg wins over the environment
        ({"SOURCE_DATE_EPOCH": ""}, 5, 5),
    ],
)
def test_source_date_epoch_from_build_arg_or_option(args, option, expected):
    options = BuildOptions(context=Path("."), build_args=args, source_date_epoch=option)
    assert _source_date_epoch(options) == expected


@pytest.mark.parametrize("value", ["-1", "1.5", "yesterday", "\uff11\uff12"])  # fullwidth digits
def test_invalid_source_date_epoch(value):
    with pytest.raises(BuildError, match="invalid SOURCE_DATE_EPOCH"):
        _source_date_epoch(BuildOptions(context=Path("."), build_args={"SOURCE_DATE_EPOCH": value}))
