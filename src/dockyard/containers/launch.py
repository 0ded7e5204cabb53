"""``dockyard.run``: a command in a new container from an image, as ``dockyard run`` does.

The image is pulled first if the store lacks it, as docker does. By default the
container is a working container (:mod:`.catalog`): it stays, with its changes, its
command and its exit code, for ``container diff/commit/rm``. With ``remove`` the rootfs
is a scratch overlay, gone afterwards. ``detach`` runs the working container in the
background (:mod:`.background`); with ``remove`` it is deleted when it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.errors import ContainerError
from dockyard.reference import Reference, as_reference
from dockyard.runtime import NONE, ContainerConfig, Mount, Snapshots, container_config
from dockyard.runtime.rootfs import StoredImage, scratch_rootfs, stored_image
from dockyard.store import Store, as_store

if TYPE_CHECKING:
    from dockyard.containers.logfile import LogLimits
    from dockyard.runtime.container import File
    from dockyard.transfer.copy import CopyProgress

RUN_FAILED = 125  # docker's exit status for a container that could not be run


@dataclass(frozen=True)
class RunResult:
    """How a run went: the command's exit code and the working container's name.

    ``exit_code`` is 0 for a detached start; ``name`` is None with ``remove``, unless
    detached.
    """

    exit_code: int
    name: str | None = None


def run(
    image: str | Reference,
    command: Sequence[str] = (),
    *,
    store: Store | str | Path | None = None,
    remove: bool = False,
    name: str | None = None,
    detach: bool = False,
    log: LogLimits | None = None,
    entrypoint: str | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    workdir: str | None = None,
    mounts: Sequence[Mount] = (),
    network: str = "default",
    stdin: File = None,
    terminal: bool = False,
    tls_verify: bool | None = None,
    progress: CopyProgress | AbstractContextManager[CopyProgress] | None = None,
    note: Callable[[str], None] | None = None,
    on_created: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``command`` (default: the image's) in a new container from ``image``.

    ``entrypoint``, ``env``, ``user`` and ``workdir`` override the image's; ``network``
    is ``default`` (private, outbound NAT, no host address reachable), ``none`` or
    ``host``. ``progress`` shows a pull (a context manager, such as a display with a
    thread of its own, is entered for the pull only) and ``note`` hears of it;
    ``on_created`` hears the working container's name before the command starts.
    ``log`` caps a detached container's log (default: :class:`.logfile.LogLimits`).
    ContainerError if the container could not be run (a working container then records
    exit code 125).
    """
    opened = as_store(store)
    ref = as_reference(image)
    shown = progress if isinstance(progress, AbstractContextManager) else nullcontext(progress)
    with shown as display:
        found = stored_image(opened, ref, tls_verify=tls_verify, progress=display, note=note)
    base = ContainerConfig(
        args=(),
        network=NONE if network == "default" else network,
        mounts=list(mounts),
        terminal=terminal,
    )
    config = container_config(
        found.config,
        args=command,
        entrypoint=entrypoint,
        env=env,
        user=user,
        workdir=workdir,
        base=base,
    )
    if detach:
        return _detached(opened, found, config, network == "default", remove, name, log)
    with Snapshots(opened) as snapshots:  # holds the image's snapshots while it runs
        if remove:
            with scratch_rootfs(snapshots, snapshots.prepare(found.manifest)) as fs:
                return RunResult(run_in_rootfs(opened, fs.merged, config, network, stdin))
        return _in_working_container(
            opened, snapshots, found, config, network, stdin, name, on_created
        )


def run_in_rootfs(
    store: Store, rootfs: Path, config: ContainerConfig, network: str, stdin: File = None
) -> int:
    """Run ``config`` in the mounted ``rootfs``; return its exit code.

    ``network`` ``default`` is a private NAT network of its own.
    """
    from dockyard.runtime import run as run_container

    with contextlib.ExitStack() as stack:
        if network == "default":
            from dockyard.runtime.nat import nat_network  # socket and all: only for NAT

            config = stack.enter_context(nat_network()).apply(config)
        return run_container(rootfs, config, root=store.root, stdin=stdin)


def _in_working_container(
    store: Store,
    snapshots: Snapshots,
    image: StoredImage,
    config: ContainerConfig,
    network: str,
    stdin: File,
    name: str | None,
    on_created: Callable[[str], None] | None,
) -> RunResult:
    """Create a working container over ``image``, run ``config`` in it and record the
    command and its exit code."""
    from dockyard.containers import rootfs
    from dockyard.containers.catalog import Catalog

    catalog = Catalog(store)
    created = catalog.create(snapshots, str(image.ref), image.manifest, name)
    if on_created:
        on_created(created.name)
    with catalog.locked(created) as container:
        container.record.command = list(config.args)
        with rootfs.merged(store, snapshots, container) as merged:
            try:
                code = run_in_rootfs(store, merged, config, network, stdin)
            except ContainerError:
                container.record.exit_code = RUN_FAILED
                container.save()
                raise
        container.record.exit_code = code
        container.save()
    return RunResult(code, created.name)


def _detached(
    store: Store,
    image: StoredImage,
    config: ContainerConfig,
    nat: bool,
    remove: bool,
    name: str | None,
    log: LogLimits | None,
) -> RunResult:
    """A working container run by a supervisor of its own (:mod:`.background`),
    returned once its process runs."""
    from dockyard.containers import background
    from dockyard.containers.catalog import Catalog
    from dockyard.containers.logfile import LogLimits
    from dockyard.oci.config import ImageConfig
    from dockyard.runtime.imageconfig import parse_signal

    stop = ImageConfig(image.config).stop_signal or "SIGTERM"
    try:
        stop_signal = parse_signal(stop)
    except ValueError as e:
        raise ContainerError(f"image {image.ref}: StopSignal: {e}") from None
    with Snapshots(store) as snapshots:
        created = Catalog(store).create(snapshots, str(image.ref), image.manifest, name)
    limits = log or LogLimits()
    job = background.Job(str(store.root), created.name, config, nat, remove, stop_signal, limits)
    background.start(job)
    return RunResult(0, created.name)
