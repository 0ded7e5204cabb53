"""What the last run of a step made, found by the step's place in a build, not its inputs.

A step that misses the cache often makes much of what its last run made. An edited
COPY rewrites a few files of many: the last run's snapshot is where the new one finds
the others, to share their inodes instead of creating them again. A step that reran
only because a step above it changed (a RUN after an edited COPY) often makes the same
files but for their times: it then keeps the last run's layer, so the layers after an
edit keep their digests (see :meth:`.StepRunner.change`).

Records are only hints: what is shared or kept is compared entry by entry, byte for
byte, first. They live in ``<store>/build/lineage/<key>``, written without an fsync:
one a crash may have damaged counts as none (see :mod:`.durability`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.builder.durability import RecordMarkers
from dockyard.builder.incremental import CopyRecord
from dockyard.errors import DigestError
from dockyard.layers import PackedLayer
from dockyard.oci import digest as digests


@dataclass(frozen=True)
class LastRun:
    """A step's last run: the snapshot (chain ID) and layer it made, and a digest of its inputs.

    The digest covers all its inputs but the state it started from. ``copy``: what a
    COPY noted for an incremental rebuild (see :mod:`.incremental`).
    """

    chain: str
    layer: PackedLayer
    inputs: str
    copy: CopyRecord | None = None


class StepLineage:
    """The records of one store."""

    def __init__(self, store_root: Path):
        self.directory = store_root / "build" / "lineage"
        self.markers = RecordMarkers(store_root, "lineage")

    @staticmethod
    def key(context: Path, dockerfile: Path, step: str, workdir: str) -> str:
        """A step's place: its build context and Dockerfile, the step and its directory.

        The step is named as the history names it (edited sources or a new base leave it
        the same).
        """
        doc = [str(context.resolve()), str(dockerfile.resolve()), step, workdir]
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()

    def get(self, key: str) -> LastRun | None:
        """The last run of step ``key``, if recorded (a damaged record is none)."""
        if not self.markers.whole(key):
            return None
        try:
            doc = json.loads((self.directory / key).read_bytes())
            layer = PackedLayer(
                digest=digests.validate(doc["digest"]),
                size=int(doc["size"]),
                diff_id=digests.validate(doc["diff_id"]),
                media_type=str(doc["media_type"]),
            )
            copy = CopyRecord.from_json(doc["copy"]) if doc.get("copy") else None
            return LastRun(digests.validate(doc["chain"]), layer, str(doc["inputs"]), copy)
        except (OSError, ValueError, KeyError, TypeError, DigestError):
            return None

    def prune(self, still_there: Callable[[LastRun], bool]) -> int:
        """Delete the records of runs whose snapshot or layer is gone, and damaged ones.

        ``still_there`` says which are gone. Return how many went.
        """
        removed = 0
        try:
            names = [e.name for e in os.scandir(self.directory) if not e.name.startswith(".")]
        except FileNotFoundError:
            return 0
        for name in names:
            run = self.get(name)
            if run is None or not still_there(run):
                (self.directory / name).unlink(missing_ok=True)
                removed += 1
        return removed

    def put(self, key: str, run: LastRun) -> None:
        """Record ``run`` as the last run of step ``key`` (not synced: marked)."""
        doc = {
            "chain": run.chain,
            "digest": run.layer.digest,
            "size": run.layer.size,
            "diff_id": run.layer.diff_id,
            "media_type": run.layer.media_type,
            "inputs": run.inputs,
            "copy": run.copy.to_json() if run.copy is not None else None,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        self.markers.write(self.directory / key, json.dumps(doc).encode())
