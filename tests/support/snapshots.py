"""Sample images in a store with their snapshots made by hand (no layer extraction)."""

from __future__ import annotations

from pathlib import Path

from dockyard.reference import parse
from dockyard.runtime.snapshots import Snapshots, chain_ids
from dockyard.store import Store
from tests.support.sample_images import copy_by_hand, sample_image


def snapshot(snapshots: Snapshots, chain: str, files: dict[str, bytes]) -> Path:
    """A snapshot dir as extraction or a commit leaves it (made by hand: no root here)."""
    path = snapshots.path(chain)
    path.mkdir(parents=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def stored_with_snapshots(store: Store, name: str, *layers: dict[str, bytes]) -> list[str]:
    """Store an image of ``layers`` named ``name``, make its snapshots; its chain IDs."""
    image = sample_image(*layers)
    copy_by_hand(image, store.destination(parse(name)))
    chains = chain_ids(image.diff_ids)
    snapshots = Snapshots(store)
    for chain, files in zip(chains, layers, strict=True):
        if not snapshots.exists(chain):
            snapshot(snapshots, chain, files)
    return chains
