"""What dockyard keeps on disk, per kind, and deleting it by policy.

Taking stock is ``dockyard df``; deleting is ``dockyard prune --keep-storage/--until/--filter``.
:mod:`.usage` takes stock, :mod:`.prune` chooses and deletes, sparing what live processes hold."""
