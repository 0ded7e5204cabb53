"""Executing the steps that change files: each in an overlay over the parent's snapshots.

A step mounts the parent's layers (snapshot dirs, extracted once per chain ID) as
overlay lowers with a fresh upper dir; RUN executes a container there, COPY/ADD and
WORKDIR write straight into the merged dir (no container). What the step changed is
exactly the upper dir: it is packed into the layer blob (overlay whiteouts become OCI
whiteouts) and then renamed into the snapshot of the new chain ID, so the next step
mounts it without extracting anything.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import BuildError
from dockyard.layers import PackedLayer, pack
from dockyard.runtime.rootfs import OverlayRootfs, overlay_rootfs
from dockyard.runtime.snapshots import Snapshots, chain_id, chain_ids
from dockyard.store import Store
from dockyard.store.holds import Hold

FAILED_OUTPUT_LINES = 20


@dataclass(frozen=True)
class StepLayer:
    """What a file-changing step produced; ``packed`` is None when it changed nothing."""

    packed: PackedLayer | None


class StepRunner:
    """Overlay mounts, layer packing and snapshot bookkeeping for one store."""

    def __init__(
        self,
        store: Store,
        snapshots: Snapshots,
        blob_hold: Hold,
        *,
        source_date_epoch: int | None,
    ):
        self.store = store
        self.snapshots = snapshots
        self.blob_hold = blob_hold  # keeps the new layer blobs until the image names them
        self.source_date_epoch = source_date_epoch

    def lowers(self, state) -> list[Path]:
        """Snapshot dirs of ``state``'s layers (top first), extracting missing ones."""
        return self.snapshots.ensure(state.layers, state.diff_ids)

    @contextmanager
    def view(self, state) -> Iterator[Path]:
        """A mounted view of ``state``'s filesystem for reading (COPY --from, bind
        mounts from a stage); writes to it are thrown away."""
        with self.snapshots.scratch() as scratch, overlay_rootfs(self.lowers(state), scratch) as fs:
            yield fs.merged

    def change(self, state, work: Callable[[OverlayRootfs], None]) -> StepLayer:
        """Mount ``state``, let ``work`` change the merged dir, and turn the upper dir
        into a layer blob in the store and a snapshot. An empty diff makes no layer."""
        with self.snapshots.scratch() as scratch:
            with overlay_rootfs(self.lowers(state), scratch) as fs:
                work(fs)
            return self._layer(state, scratch / "upper", overlay=True)

    def detached(self, state, work: Callable[[Path], None]) -> StepLayer:
        """A layer made apart from ``state`` (``COPY --link``): ``work`` writes into an
        empty dir, which becomes the layer on top of ``state``. Nothing below is read, so
        the layer is the same whatever ``state`` holds."""
        with self.snapshots.scratch() as scratch:
            root = scratch / "upper"
            root.mkdir()
            work(root)
            return self._layer(state, root, overlay=False)

    def _layer(self, state, upper: Path, *, overlay: bool) -> StepLayer:
        """Pack ``upper`` into a layer blob in the store and make it the snapshot above
        ``state``'s layers. An empty dir makes no layer."""
        if not any(os.scandir(upper)):
            return StepLayer(None)
        with self.store.lease(), self.store.blobs.ingest() as blob:
            packed = pack(
                upper, blob.file, overlay=overlay, source_date_epoch=self.source_date_epoch
            )
            blob.commit(packed.digest)
            self.blob_hold.add([packed.digest])
        parent = chain_ids(state.diff_ids)
        self.snapshots.commit(upper, chain_id(parent[-1] if parent else None, packed.diff_id))
        return StepLayer(packed)


class OutputTail:
    """Keeps the last lines of a command's output for the error message of a failed RUN,
    and passes every line on to ``log``."""

    def __init__(self, log: Callable[[str], None]):
        self._log = log
        self._lines: deque[str] = deque(maxlen=FAILED_OUTPUT_LINES)
        self._partial = b""

    def __call__(self, stream: str, data: bytes) -> None:
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace")
            self._lines.append(text)
            self._log(text)

    def lines(self) -> list[str]:
        if self._partial:
            self.__call__("", b"\n")
        return list(self._lines)


@contextmanager
def secret_files(
    secrets: dict[str, bytes], wanted: list[str], where: Path
) -> Iterator[dict[str, Path]]:
    """The ``wanted`` secrets as 0600 files in a private temp dir (outside any rootfs),
    deleted afterwards: bind-mounted into RUN, never in a layer or the cache."""
    with ExitStack() as stack:
        where.mkdir(parents=True, exist_ok=True)
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=where)))
        os.chmod(directory, 0o700)
        files = {}
        for secret_id in wanted:
            path = directory / secret_id.replace("/", "_")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets[secret_id])
            files[secret_id] = path
        yield files


def run_failed(instr, exit_code: int, tail: list[str]) -> BuildError:
    shown = "\n".join(f"  {line}" for line in tail)
    message = f"{instr.original!r} exited with code {exit_code}"
    return instr.error(f"{message}\n{shown}" if shown else message)
