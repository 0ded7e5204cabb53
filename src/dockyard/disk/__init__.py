"""What dockyard keeps on disk, per kind, and deleting it by policy.

What it keeps: ``dockyard df``; deleting: ``dockyard prune --keep-storage/--until/--filter``.
:mod:`.usage` takes stock, :mod:`.prune` chooses and deletes, sparing what live processes hold."""
