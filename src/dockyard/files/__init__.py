"""Files on disk done safely.

Atomic writes, ``flock`` locks, boot-ID durability markers, content-addressed blob directories, and
tar archives read and written member by member.

The homes (:mod:`dockyard.layout`, :mod:`dockyard.store`), snapshots and the registry's
storage are built on these; nothing here knows about images."""
