"""Dockerfile instructions as edits of an image (:class:`dockyard.oci.mutate.ImageState`).

The frontend's side of the mutate step: ``FROM scratch`` as BuildKit makes it, the
config-only instructions (ENV, CMD, LABEL, USER, ...) mapped onto the state's edits,
and the history comment BuildKit writes. Used by builds and ``container commit
--change``.
"""

from __future__ import annotations

from typing import Any

from dockyard.builder.frontend import commands as ins
from dockyard.oci.descriptor import Platform
from dockyard.oci.mutate import ImageState

HISTORY_COMMENT = "buildkit.dockerfile.v0"


def scratch(platform: Platform) -> ImageState:
    """``FROM scratch``: BuildKit's empty image, working dir ``/``.

    The builder adds ``PATH`` to every stage's Env that lacks it."""
    state = ImageState.new(platform)
    state.set_workdir("/")
    return state


def apply_metadata(state: ImageState, instr: ins.Instruction) -> str | None:
    """Apply an instruction that only changes the config, already expanded.

    That is ENV, CMD, LABEL, USER, ...: everything but FROM, RUN, COPY, ADD, WORKDIR's directory and
    ARG. Return its history text (None: ONBUILD, which docker records in no history)."""
    match instr:
        case ins.Env():
            for pair in instr.pairs:
                state.set_env(pair.key, pair.value)
        case ins.Label():
            state.add_labels({pair.key: pair.value for pair in instr.pairs})
        case ins.Maintainer():
            state.set_author(instr.maintainer)
        case ins.Expose():
            state.add_exposed_ports(instr.ports)
        case ins.Volume():
            state.add_volumes(instr.volumes)
        case ins.User():
            state.set_user(instr.user)
        case ins.StopSignal():
            state.set_stop_signal(instr.signal)
        case ins.Healthcheck():
            state.set_healthcheck(_healthcheck(instr))
        case ins.Shell():
            state.set_shell(list(instr.shell))
        case ins.Cmd() | ins.Entrypoint():
            shell = state.shell or ins.DEFAULT_SHELL
            if isinstance(instr, ins.Cmd):
                state.set_cmd(instr.config_value(shell))
            else:
                state.set_entrypoint(instr.config_value(shell))
            return instr.created_by(shell)
        case ins.Onbuild():
            state.add_onbuild(instr.expression)
            return None
        case _:
            raise instr.error(f"{instr.keyword} is not supported")
    return instr.created_by()


def _healthcheck(instr: ins.Healthcheck) -> dict[str, Any]:
    check: dict[str, Any] = {"Test": list(instr.test)}
    for key, value in (
        ("Interval", instr.interval),
        ("Timeout", instr.timeout),
        ("StartPeriod", instr.start_period),
        ("StartInterval", instr.start_interval),
        ("Retries", instr.retries),
    ):
        if value:
            check[key] = value
    return check
