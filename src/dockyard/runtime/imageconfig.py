"""Docker's rules for turning an image config plus ``run`` options into what to run.

- The command is ENTRYPOINT + CMD. Arguments given to ``run`` replace CMD; an
  ``--entrypoint`` replaces ENTRYPOINT *and* drops the image's CMD (``""`` clears it).
- ENV from the image, then the caller's variables over it.
- USER and WORKDIR from the image unless given (WORKDIR defaults to ``/``).
- STOPSIGNAL by name (``SIGTERM``, ``TERM``), number or ``SIGRTMIN+n``.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from dockyard.errors import ContainerError
from dockyard.oci.config import ImageConfig
from dockyard.runtime.config import ContainerConfig


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``["K=V", ...]`` as a dict, later entries winning; ``K`` alone means ``K=``."""
    env: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def command(
    config: ImageConfig, args: Sequence[str] = (), entrypoint: str | None = None
) -> list[str]:
    """The argv docker would run for an image ``config``."""
    if entrypoint is None:
        prefix = list(config.entrypoint)
        rest = list(args) or list(config.cmd)
    else:
        prefix = [entrypoint] if entrypoint else []
        rest = list(args)
    argv = prefix + rest
    if not argv:
        raise ContainerError("no command specified: the image has no ENTRYPOINT or CMD")
    return argv


def container_config(
    image_config: Mapping[str, Any],
    *,
    args: Sequence[str] = (),
    entrypoint: str | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    workdir: str | None = None,
    base: ContainerConfig | None = None,
) -> ContainerConfig:
    """A :class:`ContainerConfig` for an image, with the ``run`` overrides applied.

    The image is given as its whole config document; other settings (network, mounts...) come from
    ``base``."""
    image = ImageConfig(image_config)
    merged_env = parse_env(image.env)
    merged_env.update(env or {})
    return replace(
        base or ContainerConfig(args=()),
        args=command(image, args, entrypoint),
        env=merged_env,
        user=user if user is not None else image.user,
        cwd=workdir or image.working_dir or "/",
    )


def parse_signal(name: str) -> int:
    """The number of a signal as images name it (``StopSignal``).

    Named as ``SIGTERM``, ``TERM``, ``15`` or ``SIGRTMIN+3``."""
    text = name.strip().upper().removeprefix("SIG")
    rtmin, plus, offset = text.partition("+")
    if text.isdigit():
        number = int(text)
    elif rtmin == "RTMIN" and plus and offset.isdigit():
        number = signal.SIGRTMIN + int(offset)
    else:
        number = signal.Signals.__members__.get(f"SIG{text}", 0)
    if not 0 < number <= signal.SIGRTMAX:
        raise ValueError(f"{name!r} is not a signal")
    return number


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; real-time signals by number."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
