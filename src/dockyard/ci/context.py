"""What every container of a run shares: the store, the network, the workspace.

All of a run's containers, services and steps alike, join one network namespace (the
pod model): they reach each other on 127.0.0.1, and each service's name resolves to
127.0.0.1 through ``/etc/hosts``. That namespace has outbound NAT
(:mod:`dockyard.runtime.nat`: ``pip install`` works, the host's loopback and addresses
are refused, no ``CAP_NET_RAW``); a step with ``network: none`` gets a namespace of
its own with only a loopback instead, a step with services of its own a NAT'd network
of its own, shared with them only. All see the run's workspace at ``/workspace``.
The RUN steps of a build step are apart: a private NAT'd network of their own, the
host's only if the operator allows it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.ci.cancel import Cancellation
from dockyard.ci.images import Images
from dockyard.ci.results import Events
from dockyard.ci.runs import RunDir
from dockyard.ci.workspace import MOUNT_POINT
from dockyard.runtime import ContainerConfig, Mount
from dockyard.runtime.config import NONE
from dockyard.runtime.nat import DROPPED_CAPABILITIES
from dockyard.store import Store
from dockyard.store.holds import Hold

if TYPE_CHECKING:
    from dockyard.registry.client import Credentials, CredentialScope


@dataclass
class RunContext:
    """The shared state of one run, handed to its services and steps."""

    store: Store
    images: Images
    run: RunDir
    netns: Path  # the run's network namespace, as a path containers join
    services: Sequence[str]  # their names, for /etc/hosts
    secrets: dict[str, str]  # every secret given to the run: all are masked
    events: Events
    cancel: Cancellation = field(default_factory=Cancellation)
    # registry_auth secrets read (name -> host -> credentials), the pipeline's, and
    # whether hosts without any may be reached with the host's own logins
    registry_credentials: dict[str, dict[str, Credentials]] = field(default_factory=dict)
    registry_auth: str | None = None
    allow_host_credentials: bool = False
    allow_host_network: bool = False  # for build steps: the operator's choice
    dns: Sequence[str] = ()  # the name servers the run's network reaches
    hold: Hold | None = None  # the run's names held from a prune (its id, its caches)

    def base_config(
        self, hostname: str, mounts: Sequence[Mount] = (), *, network: str = "default"
    ) -> ContainerConfig:
        """A container of this run: its network, its hosts, the workspace mounted.

        The network is the run's, or ``none``: loopback only."""
        shared = network != "none"
        return ContainerConfig(
            args=(),
            hostname=hostname,
            network=str(self.netns) if shared else NONE,
            dns=tuple(self.dns) if shared else (),
            drop_capabilities=DROPPED_CAPABILITIES,
            hosts={name: "127.0.0.1" for name in self.services} if shared else {},
            mounts=[Mount.bind(str(self.run.workspace), MOUNT_POINT), *mounts],
        )

    def credential_scope(self, secret: str | None) -> CredentialScope:
        """The registry credentials of a build naming the ``registry_auth`` ``secret``.

        ``secret`` None means the pipeline's; the caller closes it."""
        return credential_scope(
            self.registry_credentials,
            secret or self.registry_auth,
            self.allow_host_credentials,
        )

    @property
    def masked(self) -> list[str]:
        """Every secret, and the forms of registry passwords a log could show."""
        derived = [
            form
            for hosts in self.registry_credentials.values()
            for credentials in hosts.values()
            for form in _credential_forms(credentials)
        ]
        return list(self.secrets.values()) + derived


def credential_scope(
    registry_credentials: dict[str, dict[str, Credentials]],
    secret: str | None,
    allow_host_credentials: bool,
) -> CredentialScope:
    """The registry access of a run's pulls or build.

    The ``secret``'s credentials (none if None), and the host's own logins only if the operator
    allowed them."""
    from dockyard.registry.client import CredentialScope

    return CredentialScope(
        registry_credentials.get(secret, {}) if secret else {},
        host_credentials=allow_host_credentials,
    )


def _credential_forms(credentials: Credentials) -> list[str]:
    """A password or token as given, and ``user:password`` as sent (base64)."""
    pair = f"{credentials.username}:{credentials.password}".encode()
    forms = [credentials.password, credentials.identity_token, base64.b64encode(pair).decode()]
    return [form for form in forms if form]
