"""Working containers: open an image, change it, commit the changes as a layer.

Changed by command or by hand, as buildah's ``from``/``run``/``mount``/``commit`` and ``docker
commit`` do.

A working container is an overlay: the snapshots of its image's layers (read-only,
shared, see :mod:`dockyard.runtime.snapshots`) under an upper dir of its own that
collects every change. It lives in ``<store root>/containers/<name>/``::

    container.json   the record (:mod:`.record`), replaced atomically
    upper/           what changed since the image it stands on
    work/ merged/    while mounted (``container mount``, or a ``container run``)
    lock             flock'ed by the command using the container (:mod:`.catalog`)

and survives every process: its image's blobs and snapshots are *pinned*
(:mod:`dockyard.store.pins`), so ``dockyard prune`` never takes them.

- :mod:`.record`: what a container is on disk, and its names.
- :mod:`.catalog`: creating, finding, listing, locking and removing containers.
- :mod:`.rootfs`: the merged view, mounted for a run or left mounted for the host.
- :mod:`.diff`: what changed against the image (``A``/``C``/``D``, as ``docker diff``).
- :mod:`.commit`: the upper dir as a new layer and image; the container then stands on
  that image, so a later commit adds only later changes.
"""
