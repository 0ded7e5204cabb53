"""OCI image layout directories (``oci-layout``, ``index.json``, ``blobs/``) as image homes.

An ``index.json`` entry names an image through its ``org.opencontainers.image.ref.name``
annotation. Entries are rewritten under a lock (``flock`` on the layout directory
itself, so no lock file is left in the layout) and replaced atomically, so concurrent
writers of different names all keep their entry.

Manifests are stored byte for byte, and an entry's ``mediaType`` is the manifest's own
type. For a Docker schema 2 manifest that means a Docker media type in ``index.json``:
valid OCI, but ``skopeo``'s ``oci:`` transport (containers/image 5.2x) skips such
entries when it looks a name up (it still opens a layout whose only entry it is, when
no name is given), and ``umoci`` refuses them. So the commands that write layouts
convert such an image to OCI on the way (:mod:`dockyard.transfer.convert`), unless
``--preserve-digests``; the store, which other tools do not read, keeps it as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from dockyard.errors import ManifestError, NotFound, StoreError
from dockyard.files import atomic
from dockyard.files.blobdir import BlobDir
from dockyard.files.locking import FileLock
from dockyard.files.unsynced import UnsyncedMarkers
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import BlobOpener, RawManifest
from dockyard.oci.streams import ReadCloser

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
MAX_MANIFEST_SIZE = 4 << 20  # what registries accept; more is not a manifest


def ref_name(desc: Descriptor) -> str | None:
    """The name an index entry carries, if any."""
    return desc.annotations.get(REF_NAME)


def select_entry(index: manifests.Index, name: str | None, where: str) -> Descriptor:
    """The entry called ``name``; with no name, the only entry. Raise naming ``where``."""
    if name is None:
        if len(index.manifests) == 1:
            return index.manifests[0]
        names = ", ".join(sorted({n for d in index.manifests if (n := ref_name(d))}))
        if not index.manifests:
            raise NotFound(f"{where} holds no image")
        raise NotFound(
            f"{where} holds {len(index.manifests)} images: name one ({names or 'all unnamed'})"
        )
    for entry in index.manifests:
        if ref_name(entry) == name:
            return entry
    raise NotFound(f"no image named {name!r} in {where}")


def parse_index(raw: bytes, where: str) -> manifests.Index:
    """Parse an ``index.json``; raise :class:`ManifestError` naming ``where``."""
    parsed = manifests.parse(raw, mt.OCI_INDEX, where)
    if not isinstance(parsed, manifests.Index):
        raise ManifestError(f"{where}: is an image manifest, not an index")
    return parsed


class OCILayout:
    """One OCI image layout directory: its blobs and its ``index.json``."""

    def __init__(
        self,
        root: Path,
        *,
        tmp_dir: Path | None = None,
        unsynced: UnsyncedMarkers | None = None,
    ):
        self.root = Path(root)
        self.blobs = BlobDir(self.root / "blobs", tmp_dir, unsynced)
        self._index_path = self.root / INDEX_FILE

    def exists(self) -> bool:
        return (self.root / LAYOUT_FILE).is_file()

    def check(self) -> None:
        """Raise :class:`NotFound` unless ``root`` is an OCI layout."""
        if not self.exists():
            raise NotFound(f"{self.root} is not an OCI image layout (no {LAYOUT_FILE} file)")

    def ensure(self) -> None:
        """Create the layout if it is missing; safe to race with other processes."""
        try:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create OCI layout {self.root}: {e.strerror}") from None
        if not self.exists():
            atomic.write_bytes(self.root / LAYOUT_FILE, LAYOUT_VERSION)
        if not self._index_path.exists():
            with self.lock():
                if not self._index_path.exists():
                    atomic.write_bytes(self._index_path, manifests.build_index([]).raw)

    def lock(self) -> FileLock:
        """The lock that serialises read-modify-write of ``index.json``.

        It is the layout directory itself."""
        return FileLock(self.root, directory=True)

    def index(self) -> manifests.Index:
        """The parsed ``index.json`` (empty if the file does not exist yet)."""
        try:
            raw = self._index_path.read_bytes()
        except FileNotFoundError:
            return manifests.build_index([])
        return parse_index(raw, str(self._index_path))

    def resolve(self, name: str | None) -> Descriptor:
        """The entry called ``name`` (or the only one); raise :class:`NotFound`."""
        return select_entry(self.index(), name, str(self.root))

    def update(self, change: Callable[[list[Descriptor]], list[Descriptor]]) -> None:
        """Rewrite the entry list as ``change`` says, under the lock; other fields stay."""
        self.ensure()
        with self.lock():
            doc = self._read_doc()
            entries = [
                Descriptor.from_dict(d, f"{self._index_path}: manifests[{i}]")
                for i, d in enumerate(doc.get("manifests") or [])
            ]
            changed = [d.to_dict() for d in change(entries)]
            if changed == doc.get("manifests"):
                return  # as it was (a rebuild naming the same image): no write, no fsync
            doc["manifests"] = changed
            atomic.write_bytes(self._index_path, manifests.dumps(doc))

    def set_name(self, name: str | None, desc: Descriptor) -> None:
        """Point ``name`` at ``desc``, replacing the entry that had the name before.

        With no name the entry is added unnamed (once per digest).
        """
        annotations = {k: v for k, v in desc.annotations.items() if k != REF_NAME}
        if name is not None:
            annotations[REF_NAME] = name
        entry = desc.replace(annotations=annotations)

        def same(old: Descriptor) -> bool:
            if name is None:
                return ref_name(old) is None and old.digest == desc.digest
            return ref_name(old) == name

        def change(entries: list[Descriptor]) -> list[Descriptor]:
            for i, old in enumerate(entries):
                if same(old):
                    return [*entries[:i], entry, *(e for e in entries[i + 1 :] if not same(e))]
            return [*entries, entry]

        self.update(change)

    def remove_name(self, name: str) -> bool:
        """Drop the entry called ``name``; False if there was none."""
        found = False

        def change(entries: list[Descriptor]) -> list[Descriptor]:
            nonlocal found
            kept = [e for e in entries if ref_name(e) != name]
            found = len(kept) != len(entries)
            return kept

        if self._index_path.exists():
            self.update(change)
        return found

    def read_manifest(
        self, digest: str, size: int | None = None, media_type: str | None = None
    ) -> RawManifest:
        """A manifest or index blob, verified, with its real media type."""
        where = f"manifest {digest} in {self.root}"
        if (size if size is not None else self.blobs.size(digest)) > MAX_MANIFEST_SIZE:
            raise ManifestError(f"{where}: too big for a manifest")
        data = self.blobs.read_bytes(digest, size)
        return RawManifest(data, manifests.detect_media_type(data, media_type, where))

    def _read_doc(self) -> dict[str, Any]:
        raw = self._index_path.read_bytes()
        parse_index(raw, str(self._index_path))
        return json.loads(raw)


class LayoutImageSource:
    """Read one image of ``layout``: the entry ``descriptor``.

    The descriptor is as :meth:`OCILayout.resolve` or :meth:`.Store.resolve` found it. The store is
    an OCI layout too, so this is its source as well."""

    def __init__(self, layout: OCILayout, descriptor: Descriptor):
        self.layout = layout
        self.descriptor = descriptor

    def root_manifest(self) -> RawManifest:
        d = self.descriptor
        return self.layout.read_manifest(d.digest, d.size, d.media_type)

    def manifest(self, digest: str) -> RawManifest:
        return self.layout.read_manifest(digest)

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[ReadCloser]:
        return self.layout.blobs.open(desc.digest, desc.size)


class LayoutSource(LayoutImageSource):
    """Read the image ``tag`` names in the layout at ``path`` (the only one if no tag)."""

    def __init__(self, path: Path, tag: str | None = None):
        layout = OCILayout(path)
        layout.check()
        super().__init__(layout, layout.resolve(tag))


class BlobsDestination:
    """The blob side of a destination backed by a :class:`BlobDir`.

    Blobs and manifests land as they come, and the root manifest is remembered for the subclass's
    ``commit`` to name."""

    def __init__(self, blobs: BlobDir, where: object):
        self.blobs = blobs
        self._where = where
        self._root: Descriptor | None = None

    def has_blob(self, desc: Descriptor) -> bool:
        return self.blobs.has(desc.digest)

    def put_blob(
        self, desc: Descriptor, stream: ReadCloser, *, reopen: BlobOpener | None = None
    ) -> None:
        self.blobs.write(desc.digest, stream, desc.size)

    def put_manifest(self, manifest: RawManifest, *, root: bool) -> None:
        digest = self.blobs.write_bytes(manifest.data)
        if root:
            media_type = manifests.detect_media_type(manifest.data, manifest.media_type)
            self._root = Descriptor(media_type, digest, len(manifest.data))

    def root(self) -> Descriptor:
        """The root manifest written; StoreError if there was none."""
        if self._root is None:
            raise StoreError(f"nothing to commit to {self._where}: no root manifest")
        return self._root


class LayoutDestination(BlobsDestination):
    """Write one image into the layout at ``path`` (created if needed) under ``tag``.

    Its index entry carries ``annotations`` too.

    Blobs land as they come; ``index.json`` names the image only at :meth:`commit`, so
    an interrupted copy leaves unreferenced blobs but never a dangling name.
    """

    def __init__(
        self, path: Path, tag: str | None = None, annotations: Mapping[str, str] | None = None
    ):
        self.layout = OCILayout(path)
        self.layout.ensure()
        super().__init__(self.layout.blobs, self.layout.root)
        self.tag = tag
        self.annotations = dict(annotations or {})

    def commit(self) -> None:
        self.layout.set_name(self.tag, self.root().replace(annotations=self.annotations))

    def abort(self) -> None:
        """Nothing to undo: unnamed blobs are harmless and pruned later."""
