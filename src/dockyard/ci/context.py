"""What every container of a run shares: the store, the network, the workspace.

All of a run's containers, services and steps alike, join one network namespace (the
pod model): they reach each other on 127.0.0.1, and each service's name resolves to
127.0.0.1 through ``/etc/hosts``. All see the run's workspace at ``/workspace``.
The RUN steps of a build step are apart: a private network with outbound NAT of their
own (:mod:`dockyard.runtime.nat`), the host's only if the operator allows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.ci.cancel import Cancellation
from dockyard.ci.images import Images
from dockyard.ci.results import Events
from dockyard.ci.runs import RunDir
from dockyard.ci.workspace import MOUNT_POINT
from dockyard.runtime import ContainerConfig, Mount
from dockyard.store import Store


@dataclass
class RunContext:
    """The shared state of one run, handed to its services and steps."""

    store: Store
    images: Images
    run: RunDir
    netns: Path
    services: Sequence[str]  # their names, for /etc/hosts
    secrets: dict[str, str]  # every secret given to the run: all are masked
    events: Events
    cancel: Cancellation = field(default_factory=Cancellation)
    allow_host_network: bool = False  # for build steps: the operator's choice

    def base_config(self, hostname: str, mounts: Sequence[Mount] = ()) -> ContainerConfig:
        """A container of this run: its network, its hosts, the workspace mounted."""
        return ContainerConfig(
            args=(),
            hostname=hostname,
            network=str(self.netns),
            hosts={name: "127.0.0.1" for name in self.services},
            mounts=[Mount.bind(str(self.run.workspace), MOUNT_POINT), *mounts],
        )

    @property
    def masked(self) -> list[str]:
        return list(self.secrets.values())
