"""``dockyard.build``: a build and where its image goes afterwards.

The image always lands in the store (named by its tags, and by digest under
``localhost/dockyard-build``); an :class:`Output` then sends it on, as
``docker buildx build --output`` does: to every tag's registry (``registry``, or
``push=True``), to an oci-archive, a docker-archive or an OCI layout, or flattened into a
directory (``local``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dockyard.builder.builder import BuildOptions, BuildResult, Log
from dockyard.builder.builder import build as run_build
from dockyard.builder.frontend.records import Record, record
from dockyard.errors import DockyardError
from dockyard.reference import Reference, as_reference
from dockyard.store import Store, as_store

OUTPUT_KINDS = ("store", "registry", "oci", "oci-archive", "docker-archive", "local")
TARBALLS = ("oci-archive", "docker-archive")
BUILT_REPOSITORY = Reference("localhost", "dockyard-build")  # + @digest: a build's image


@record
class Output(Record):
    """Where a built image goes: a ``kind`` of home and its ``dest``.

    ``kind`` is one of :data:`OUTPUT_KINDS` (``oci`` is a layout directory); ``dest`` is
    its path (``-``: a tarball on stdout).
    """

    kind: str = "store"
    dest: str | Path | None = None

    def __post_init__(self) -> None:
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"unknown output kind {self.kind!r} (one of {OUTPUT_KINDS})")
        if self.kind not in ("store", "registry") and not self.dest:
            raise ValueError(f"output {self.kind} needs a dest")
        if self.to_stdout and self.kind not in TARBALLS:
            raise ValueError(f"dest=- needs a tarball output, not {self.kind}")

    @property
    def to_stdout(self) -> bool:
        return self.dest == "-"


def build(
    context: str | Path | BuildOptions,
    *,
    store: Store | str | Path | None = None,
    tags: Sequence[str | Reference] = (),
    outputs: Sequence[Output] = (),
    push: bool = False,
    log: Log | None = None,
    **options: Any,
) -> BuildResult:
    """Build the Dockerfile in ``context`` into ``store``, then send the image on.

    It goes to each of ``outputs``; ``push`` (or a ``registry`` output) pushes every tag.
    ``context`` is a directory, or whole :class:`BuildOptions`; ``options`` are more of
    its fields (``dockerfile``, ``build_args``, ``target``, ``platform``, ...). ``log``
    hears the build's progress lines.
    """
    names = [as_reference(tag) for tag in tags]
    if isinstance(context, BuildOptions):
        build_options = replace(context, **options)
        build_options = replace(build_options, tags=[*build_options.tags, *names])
    else:
        build_options = BuildOptions(context=Path(context), tags=names, **options)
    push = push or any(output.kind == "registry" for output in outputs)
    if push and not build_options.tags:
        raise DockyardError("a push needs at least one tag")
    opened = as_store(store)
    result = run_build(opened, build_options, log)
    if push:
        push_tags(opened, build_options.tags)
    first = build_options.tags[0] if build_options.tags else None
    for output in outputs:
        if output.kind not in ("store", "registry"):
            export_built(opened, result.digest, output, first)
    return result


def push_tags(store: Store, tags: Sequence[Reference]) -> None:
    """Push the stored images ``tags`` name, every platform, each to its registry."""
    from dockyard.transfer.pull import push

    for ref in tags:
        push(ref, store=store)


def export_built(store: Store, digest: str, output: Output, name: Reference | None) -> None:
    """Write the built image ``digest`` where ``output`` says.

    It is named ``name`` in an archive or layout; a tarball for stdout is written to a
    temp file first.
    """
    from dockyard.transfer.convert import plan
    from dockyard.transfer.copy import copy_image
    from dockyard.transfer.transports import FILE_KINDS

    source = store.source(BUILT_REPOSITORY.with_digest(digest))
    dest = Path(str(output.dest))  # set: Output checks it
    if output.kind == "local":
        from dockyard.transfer.export import export_rootfs

        export_rootfs(source, dest)
        return
    tag = None if name is None else str(name) if output.kind == "docker-archive" else name.tag
    kind = FILE_KINDS[output.kind]
    if not output.to_stdout:
        destination = kind(dest, tag).destination(store_root=store.root)
        copy_image(source, destination, conversion=plan(output.kind))
        return
    import shutil  # here: with tempfile, ~5 ms that a build to the store skips
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dockyard-output-") as tmp:
        archive = Path(tmp) / "image.tar"
        destination = kind(archive, tag).destination(store_root=store.root)
        copy_image(source, destination, conversion=plan(output.kind))
        with open(archive, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()
