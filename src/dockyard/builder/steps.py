"""Executing the steps that change files: each in an overlay over the parent's snapshots.

A step mounts the parent's layers (snapshot dirs, extracted once per chain ID) as
overlay lowers with a fresh upper dir; RUN executes a container there, COPY/ADD and
WORKDIR write straight into the merged dir (no container). What the step changed is
exactly the upper dir: it is packed into the layer blob (overlay whiteouts become OCI
whiteouts) and then renamed into the snapshot of the new chain ID, so the next step
mounts it without extracting anything.

A step that reran meets what its last run made (:mod:`.lineage`): a small COPY then
writes into memory and its snapshot shares the last run's unchanged files, and a step
that made the same files but for their times keeps the last run's layer. An edited
COPY from the same state is not run in an overlay at all: :meth:`StepRunner.rebuild`
makes its snapshot from the last one (:mod:`.incremental`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockyard.builder.frontend.golang import quote
from dockyard.builder.incremental import CopyRecord
from dockyard.builder.lineage import LastRun
from dockyard.errors import BuildError, DigestError, LayerError
from dockyard.layers import PackedLayer, open_decompressed, pack
from dockyard.layers.packer import Previous
from dockyard.runtime import mounts
from dockyard.runtime.rootfs import OverlayRootfs, overlay_rootfs, scratch_rootfs
from dockyard.runtime.snapshots import Snapshots, chain_id, chain_ids
from dockyard.runtime.treecopy import copy_tree, same_but_times
from dockyard.store import Store
from dockyard.store.holds import Hold

FAILED_OUTPUT_LINES = 20

IN_MEMORY_LIMIT = 256 << 20
"""The most a step may write to an in-memory upper dir (see :meth:`StepRunner.change`)."""


@dataclass(frozen=True)
class StepLayer:
    """What a file-changing step produced: its layer and snapshot (chain ID).

    Both None when it changed nothing."""

    packed: PackedLayer | None
    chain: str | None = None
    kept: bool = False  # the layer is the last run's: this run made the same files
    copy: CopyRecord | None = None  # a COPY's note for its next run (see .incremental)


def fits_in_memory(footprint: int) -> bool:
    """May a step that writes ``footprint`` bytes have its upper dir in memory?

    ``footprint`` counts file data, each entry at least a 4 KiB page. Yes under
    :data:`IN_MEMORY_LIMIT`, and under an eighth of the memory available now."""
    if footprint > IN_MEMORY_LIMIT:
        return False
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return footprint * 8 <= int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return False


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
        """A mounted view of ``state``'s filesystem for reading; writes to it are thrown away.

        For COPY --from, and bind mounts from a stage."""
        with scratch_rootfs(self.snapshots, self.lowers(state)) as fs:
            yield fs.merged

    def change(
        self,
        state,
        work: Callable[[OverlayRootfs], None],
        *,
        last: LastRun | None = None,
        in_memory: bool = False,
        keep_if_same: bool = False,
    ) -> StepLayer:
        """Mount ``state``, let ``work`` change it, and turn the changes into a layer and snapshot.

        ``work`` changes the merged dir; the upper dir becomes a layer blob in the store and a
        snapshot. An empty diff makes no layer.

        ``last``: what the last run of this step made (see :mod:`.lineage`), used if its
        snapshot still exists. ``in_memory`` (for steps whose writes fit, see
        :func:`fits_in_memory`): the upper dir is a tmpfs, copied into the snapshot
        sharing the inodes of the files ``last`` made the same, so an edited COPY of many
        files creates inodes on disk for the changed ones only. ``keep_if_same``: if the
        upper dir holds what ``last``'s did but for times, ``last``'s layer is kept.
        """

        def make_upper(state_dir: Path) -> Path:
            with overlay_rootfs(self.lowers(state), state_dir) as fs:
                work(fs)
            return fs.upper

        return self._step(state, make_upper, True, last, in_memory, keep_if_same)

    def detached(
        self,
        state,
        work: Callable[[Path], object],
        *,
        last: LastRun | None = None,
        in_memory: bool = False,
        keep_if_same: bool = False,
    ) -> StepLayer:
        """A layer made apart from ``state`` (``COPY --link``).

        ``work`` writes into an empty dir, which becomes the layer on top of ``state``. Nothing
        below is read, so the layer is the same whatever ``state`` holds. The options as for
        :meth:`change`."""

        def make_upper(state_dir: Path) -> Path:
            root = state_dir / "upper"
            root.mkdir()
            work(root)
            return root

        return self._step(state, make_upper, False, last, in_memory, keep_if_same)

    def rebuild(
        self, state, last: LastRun, build: Callable[[Path, Path], Collection[str]]
    ) -> StepLayer | None:
        """The layer and snapshot above ``state`` made from ``last``'s snapshot, without an overlay.

        ``build(donor, target)`` fills the empty dir ``target`` with what the step's
        upper dir would hold, from ``last``'s snapshot ``donor``, every regular file the
        very inode of ``donor``'s at that path but those it returns (relative paths).
        ``target`` is then packed, the members of those inodes taken from ``last``'s
        layer, and becomes the snapshot. None if that snapshot is gone."""
        donor = self.snapshots.holding(last.chain)
        if donor is None:
            return None
        with self.snapshots.scratch() as scratch:
            target = scratch / "snapshot"
            target.mkdir()
            rewritten = frozenset(os.fsencode(path) for path in build(donor, target))
            packed = None
            if self._hold_blob(last.layer.digest):
                try:
                    packed = self._pack(target, last, rewritten)
                except (LayerError, DigestError):  # not what it should be: pack it all
                    packed = None
            if packed is None:
                packed = self._pack(target)
            parent = chain_ids(state.diff_ids)
            chain = chain_id(parent[-1] if parent else None, packed.diff_id)
            self.snapshots.commit(target, chain)
        return StepLayer(packed, chain)

    def _pack(
        self,
        tree: Path,
        last: LastRun | None = None,
        rewritten: frozenset[bytes] = frozenset(),
        *,
        overlay: bool = True,
    ) -> PackedLayer:
        """``tree`` (an upper dir if ``overlay``) packed into a blob of the store, held;
        made from ``last``'s layer but for the ``rewritten`` files if given (see
        :class:`.Previous`)."""
        with ExitStack() as stack:
            stack.enter_context(self.store.lease())
            blob = stack.enter_context(self.store.blobs.ingest())
            previous = None
            if last is not None:
                reader = stack.enter_context(self.store.blobs.open(last.layer.digest))
                tar = stack.enter_context(open_decompressed(reader))
                previous = Previous(tar, last.layer.diff_id, rewritten)
            packed = pack(
                tree,
                blob.file,
                overlay=overlay,
                source_date_epoch=self.source_date_epoch,
                previous=previous,
            )
            blob.commit(packed.digest)
            self.blob_hold.add([packed.digest])
        return packed

    def _step(
        self,
        state,
        make_upper: Callable[[Path], Path],
        overlay: bool,
        last: LastRun | None,
        in_memory: bool,
        keep_if_same: bool,
    ) -> StepLayer:
        """What :meth:`change` and :meth:`detached` share: ``make_upper`` fills an upper
        dir in the directory it is given, on disk or in memory."""
        with self.snapshots.scratch() as scratch:
            donor = self.snapshots.holding(last.chain) if last else None
            state_dir = self._upper_place(scratch, in_memory and donor is not None)
            return self._layer(
                state,
                make_upper(state_dir),
                scratch,
                overlay=overlay,
                donor=donor,
                copy=state_dir != scratch,
                keep=last if keep_if_same else None,
            )

    @staticmethod
    def _upper_place(scratch: Path, in_memory: bool) -> Path:
        """Where the upper dir goes: ``scratch`` itself, or a tmpfs in it."""
        if not in_memory:
            return scratch
        memory = scratch / "memory"
        memory.mkdir()
        mounts.tmpfs(memory, size=2 * IN_MEMORY_LIMIT, mode=0o755)
        return memory

    def _layer(
        self,
        state,
        upper: Path,
        scratch: Path,
        *,
        overlay: bool,
        donor: Path | None,
        copy: bool,
        keep: LastRun | None,
    ) -> StepLayer:
        """Make ``upper`` the layer and snapshot above ``state``'s layers: ``keep``'s
        layer if ``upper`` holds what its snapshot ``donor`` holds but for times, else
        a new blob packed from ``upper``. The snapshot is ``upper`` renamed, or (``copy``:
        ``upper`` is in memory) a copy of it in ``scratch`` sharing ``donor``'s identical
        files. An empty dir makes no layer."""
        if not any(os.scandir(upper)):
            return StepLayer(None)
        parent = chain_ids(state.diff_ids)
        below = parent[-1] if parent else None
        if (
            keep is not None
            and donor is not None
            and self._hold_blob(keep.layer.digest)
            and same_but_times(str(upper), str(donor))
        ):
            chain = chain_id(below, keep.layer.diff_id)
            self.snapshots.commit(_copy_sharing(donor, scratch, donor), chain)
            return StepLayer(keep.layer, chain, kept=True)
        packed = self._pack(upper, overlay=overlay)
        # A thread copying while the layer is packed was measured slower: the GIL.
        snapshot = _copy_sharing(upper, scratch, donor) if copy else upper
        chain = chain_id(below, packed.diff_id)
        self.snapshots.commit(snapshot, chain)
        return StepLayer(packed, chain)

    def _hold_blob(self, digest: str) -> bool:
        """Is the blob ``digest`` in the store? If so it is held until the build ends."""
        with self.store.lease():
            if not self.store.blobs.has(digest):
                return False
            self.blob_hold.add([digest])
        return True


def _copy_sharing(tree: Path, scratch: Path, donor: Path | None) -> Path:
    """A copy of ``tree`` on the snapshots' filesystem (in ``scratch``), its entries
    identical in the snapshot ``donor`` sharing their inodes; return it."""
    target = scratch / "snapshot"
    target.mkdir()
    copy_tree(str(tree), str(target), share_with=None if donor is None else str(donor))
    return target


class OutputTail:
    """Keeps the last lines of a command's output for the error message of a failed RUN.

    Every line is passed on to ``log``."""

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


def run_failed(instr, args: list[str], exit_code: int, tail: list[str]) -> BuildError:
    """The error of a RUN whose command ``args`` exited non-zero, in BuildKit's words.

    As in ``process "/bin/sh -c make" did not complete successfully: exit code: 2``, then the last
    lines of its output."""
    shown = "\n".join(f"  {line}" for line in tail)
    message = (
        f"process {quote(' '.join(args))} did not complete successfully: exit code: {exit_code}"
    )
    return instr.error(f"{message}\n{shown}" if shown else message)
