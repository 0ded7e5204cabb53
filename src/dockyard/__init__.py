"""Dockyard: daemonless container images, builds, registry and pipelines.

The library's verbs, each a door the CLI also uses::

    import dockyard

    store = dockyard.Store("/var/lib/dockyard")   # or None: the default root
    dockyard.pull("docker.io/library/busybox:latest", store=store)
    dockyard.copy("local:busybox:latest", "oci:/tmp/layout:v1", store=store)
    dockyard.build("app/", tags=["localhost/app:1"], store=store,
                   outputs=[dockyard.Output("oci-archive", "/tmp/app.tar")])
    result = dockyard.run("localhost/app:1", ["make", "test"], store=store, remove=True)
    dockyard.prune(store)

Everything is imported on first use (:mod:`dockyard.lazy`): ``import dockyard`` costs
the CLI's start-up nothing. Every error is a :class:`DockyardError`.
"""

from typing import TYPE_CHECKING

from dockyard import lazy

__version__ = "0.1.0"

if TYPE_CHECKING:
    from dockyard.builder.builder import BuildOptions, BuildResult
    from dockyard.builder.outputs import Output, build
    from dockyard.containers.launch import RunResult, run
    from dockyard.disk.prune import PrunePolicy, PruneSummary, prune
    from dockyard.errors import (
        AuthError,
        BuildError,
        ContainerError,
        DigestError,
        DockyardError,
        InvalidReference,
        LayerError,
        ManifestError,
        NotFound,
        RegistryError,
        StoreError,
    )
    from dockyard.reference import Reference
    from dockyard.store.store import Store
    from dockyard.transfer.copy import CopyResult, copy
    from dockyard.transfer.pull import pull, push
    from dockyard.transfer.transports import open_destination, open_source, parse_location

# Where each name lives (below the package); imported when first asked for.
_WHERE = {
    **dict.fromkeys(["BuildOptions", "BuildResult"], "builder.builder"),
    **dict.fromkeys(["Output", "build"], "builder.outputs"),
    **dict.fromkeys(["RunResult", "run"], "containers.launch"),
    **dict.fromkeys(["PrunePolicy", "PruneSummary", "prune"], "disk.prune"),
    **dict.fromkeys(
        [
            "AuthError",
            "BuildError",
            "ContainerError",
            "DigestError",
            "DockyardError",
            "InvalidReference",
            "LayerError",
            "ManifestError",
            "NotFound",
            "RegistryError",
            "StoreError",
        ],
        "errors",
    ),
    "Reference": "reference",
    "Store": "store.store",
    **dict.fromkeys(["CopyResult", "copy"], "transfer.copy"),
    **dict.fromkeys(["pull", "push"], "transfer.pull"),
    **dict.fromkeys(["open_destination", "open_source", "parse_location"], "transfer.transports"),
}

__all__ = [
    "AuthError",
    "BuildError",
    "BuildOptions",
    "BuildResult",
    "ContainerError",
    "CopyResult",
    "DigestError",
    "DockyardError",
    "InvalidReference",
    "LayerError",
    "ManifestError",
    "NotFound",
    "Output",
    "PrunePolicy",
    "PruneSummary",
    "Reference",
    "RegistryError",
    "RunResult",
    "Store",
    "StoreError",
    "build",
    "copy",
    "open_destination",
    "open_source",
    "parse_location",
    "prune",
    "pull",
    "push",
    "run",
]

__getattr__ = lazy.exports(__name__, _WHERE)
