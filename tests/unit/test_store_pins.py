"""Pins: what records on disk (working containers) keep from both prunes."""

from __future__ import annotations

import pytest

from dockyard.errors import StoreError
from dockyard.oci.digest import hex_part
from dockyard.reference import parse
from dockyard.runtime.snapshots import Snapshots
from dockyard.store import Store, pins
from dockyard.store.store import PINS_DIR
from tests.support.sample_images import copy_by_hand, sample_image
from tests.support.snapshots import stored_with_snapshots


def test_pin_replace_and_unpin(tmp_path):
    directory = tmp_path / "pins"
    assert pins.pinned_names(directory) == set()
    pins.pin(directory, "a", ["x", "y", "x"])
    pins.pin(directory, "b", ["z"])
    assert pins.pinned_names(directory) == {"x", "y", "z"}
    pins.pin(directory, "a", ["w"])  # replaced, not added to
    assert pins.pinned_names(directory) == {"w", "z"}
    assert (directory / "a").read_text() == "w\n"
    pins.unpin(directory, "a")
    pins.unpin(directory, "a")  # idempotent
    assert pins.pinned_names(directory) == {"z"}


@pytest.mark.parametrize("owner", ["", "../escape", ".hidden", "a/b"])
def test_an_owner_is_one_plain_file_name(tmp_path, owner):
    with pytest.raises(StoreError, match="cannot name a pin file"):
        pins.pin(tmp_path / "pins", owner, ["x"])
    assert not (tmp_path / "escape").exists()


def test_both_prunes_spare_pinned_blobs_and_snapshots_of_an_untagged_image(store_root):
    store = Store(store_root)
    image = sample_image({"a": b"one"}, {"b": b"two"})
    copy_by_hand(image, store.destination(parse("img")))
    chains = stored_with_snapshots(store, "img", {"a": b"one"}, {"b": b"two"})
    store.untag(parse("img"))
    names = [image.doc.digest, *image.blobs, *(hex_part(c) for c in chains)]
    with store.lease():
        pins.pin(store_root / PINS_DIR, "container-1", names)

    assert store.prune().removed == []
    assert Snapshots(store).prune().removed == []

    pins.unpin(store_root / PINS_DIR, "container-1")
    assert set(store.prune().removed) == {image.doc.digest, *image.blobs}
    assert sorted(Snapshots(store).prune().removed) == sorted(chains)
