"""What dockyard keeps on disk, per kind (``dockyard df``), and deleting it by policy
(``dockyard prune --keep-storage/--until/--filter``): :mod:`.usage` takes stock,
:mod:`.prune` chooses and deletes, sparing what live processes hold."""
