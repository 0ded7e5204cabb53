"""Running processes in isolated root filesystems: snapshots, mounts, runc.

The common case, as ``dockyard run`` and pipelines use it::

    store = Store(root)
    snapshots = Snapshots(store)
    image = stored_image(store, ref)  # pulled first if missing
    with scratch_rootfs(snapshots, snapshots.prepare(image.manifest)) as rootfs:
        code = run(rootfs.merged, ContainerConfig(["sh", "-c", "make"]), root=store.root)

(the builder mounts ``overlay_rootfs`` itself where it keeps the upper dir: packs it,
then ``snapshots.commit(...)`` it).

- :mod:`.snapshots`: layers extracted once as overlay lower dirs, keyed by chain ID.
- :mod:`.rootfs`: an overlay of snapshots plus a fresh upper dir, mounted for a run;
  a stored image (pulled if missing) and a scratch rootfs of it.
- :mod:`.container`: one process under runc: namespaces, ``/proc``, ``/dev``, user,
  mounts, output streaming, timeouts that kill the whole tree, cleanup.
- :mod:`.netns`: persistent network namespaces that containers join (a pod's network).
- :mod:`.nat`: a private network namespace with outbound NAT (slirp4netns), the
  default network of RUN steps and ``dockyard run``: the host itself is unreachable.
- :mod:`.imageconfig`: docker's rules from an image config to what runs.
- :mod:`.mounts`: overlay (any number of layers), bind, tmpfs, proc, unmount.

Everything here needs root, runc, and Linux 5.10 or later (``openat2``, ``volatile``
overlays); with 6.8 or later an overlay takes any number of layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard import lazy

# Imported now: the function ``netns`` shares its name with its module, and importing
# the module later would rebind the package's ``netns`` to the module.
from dockyard.runtime.netns import create_netns, netns, remove_netns

if TYPE_CHECKING:
    from dockyard.runtime.config import HOST, NONE, ContainerConfig, Mount
    from dockyard.runtime.container import Container, ContainerTimeout, OutputCallback, run
    from dockyard.runtime.imageconfig import container_config
    from dockyard.runtime.rootfs import (
        OverlayRootfs,
        StoredImage,
        overlay_rootfs,
        scratch_rootfs,
        stored_image,
    )
    from dockyard.runtime.snapshots import Snapshots, chain_id, chain_ids

# Imported on first use: a build that hits its cache runs no container, and a command
# importing one submodule should not pay for all of them.
_WHERE = {
    **dict.fromkeys(["HOST", "NONE", "ContainerConfig", "Mount"], "config"),
    **dict.fromkeys(["Container", "ContainerTimeout", "OutputCallback", "run"], "container"),
    "container_config": "imageconfig",
    **dict.fromkeys(
        ["OverlayRootfs", "StoredImage", "overlay_rootfs", "scratch_rootfs", "stored_image"],
        "rootfs",
    ),
    **dict.fromkeys(["Snapshots", "chain_id", "chain_ids"], "snapshots"),
}

__all__ = [
    "HOST",
    "NONE",
    "Container",
    "ContainerConfig",
    "ContainerTimeout",
    "Mount",
    "OutputCallback",
    "OverlayRootfs",
    "Snapshots",
    "StoredImage",
    "chain_id",
    "chain_ids",
    "container_config",
    "create_netns",
    "netns",
    "overlay_rootfs",
    "remove_netns",
    "run",
    "scratch_rootfs",
    "stored_image",
]


__getattr__ = lazy.exports(__name__, _WHERE)
