"""Running a pipeline locally: ``run_pipeline(load_pipeline(".dockyard.yml"))``.

A run, in order:

1. a run directory in the store (:mod:`.runs`) and the workspace, a copy of the
   pipeline's directory (:mod:`.workspace`);
2. the run's network namespace, and the services in it, ready (:mod:`.services`);
3. the steps, as their dependencies allow (:mod:`.graph`), at most ``parallel`` at a
   time, each in a worker thread (:mod:`.steps`). Before a step starts, its ``when``
   is checked: branch and event against the run's, and its status list against
   whether anything it waits for failed. Failed steps thus skip their dependants, and
   ``when: status: [failure]`` steps run after a failure;
4. whatever happened (Ctrl-C included): every container killed, every mount and the
   namespace removed, the workspace deleted, and ``run.json`` written. Until then the
   run and its caches are held from ``dockyard ci prune`` (see :mod:`.runs`).

Ctrl-C reaches the main thread, which cancels the run (see :mod:`.cancel`), waits for
the workers to clean up, and re-raises :class:`KeyboardInterrupt`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.ci.caches import cache_name
from dockyard.ci.cancel import Cancellation
from dockyard.ci.context import RunContext, credential_scope
from dockyard.ci.graph import Schedule
from dockyard.ci.images import Images
from dockyard.ci.pipeline import Pipeline
from dockyard.ci.results import (
    CANCELLED,
    FAILURE,
    SKIPPED,
    SUCCESS,
    Events,
    RunResult,
    StepResult,
)
from dockyard.ci.runs import HOLDS_DIR, RUNNING, RunDir
from dockyard.ci.services import ServiceError, Services
from dockyard.ci.steps import run_step
from dockyard.ci.workspace import MOUNT_POINT, create_workspace
from dockyard.errors import AuthError, DockyardError
from dockyard.runtime import interrupts, netns
from dockyard.runtime.mounts import remove_tree
from dockyard.store import Store
from dockyard.store.holds import Hold

if TYPE_CHECKING:
    from dockyard.registry.client import Credentials

DEFAULT_EVENT = "manual"


class RunError(DockyardError):
    """A run cannot start: an unknown step selected, a secret missing."""


@dataclass
class RunOptions:
    """How to run a pipeline; every field has a sensible default."""

    store_root: Path | None = None  # default: the store's default root
    source: Path | None = None  # the tree to copy as workspace; default: the file's dir
    secrets: dict[str, str] = field(default_factory=dict)  # name -> value
    env: dict[str, str] = field(default_factory=dict)  # over the pipeline's ``env``
    branch: str | None = None
    event: str = DEFAULT_EVENT
    only: Sequence[str] = ()  # run these steps and what they depend on; default: all
    parallel: int = max(4, os.cpu_count() or 1)  # steps at a time
    # Registry access without a registry_auth secret for the host: the host's own logins
    # (an operator's choice: a pipeline may be anyone's), or anonymous (the default).
    allow_host_credentials: bool = False
    allow_host_network: bool = False  # may build steps (their RUN steps) use the host's?
    # Cancels the run from another thread (an agent told by its server); default: a new one
    cancel: Cancellation | None = None


def run_pipeline(
    pipeline: Pipeline, options: RunOptions | None = None, events: Events | None = None
) -> RunResult:
    """Run ``pipeline`` to its end; the result is also saved as the run's ``run.json``.

    Raise :class:`RunError` before anything starts if ``only`` names an unknown step,
    a selected step needs a secret that was not given, or a ``registry_auth`` secret is
    not a docker config.
    """
    options = options or RunOptions()
    events = events or Events()
    selected = _select(pipeline, options)
    registry_credentials = _registry_credentials(pipeline, options, selected)
    store = Store(options.store_root)
    hold = Hold(store.root / HOLDS_DIR)
    caches = {
        cache_name(pipeline.cache_key, path)
        for name in selected
        for path in pipeline.step(name).cache
    }
    run = RunDir.create_held(store, hold, sorted(caches))
    result = RunResult(
        id=run.id,
        pipeline=str(pipeline.file.absolute()),
        status=RUNNING,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        branch=options.branch,
        event=options.event,
        pid=os.getpid(),
    )
    run.write_record(result.to_json())
    pulls = credential_scope(  # for step and service images
        registry_credentials, pipeline.spec.registry_auth, options.allow_host_credentials
    )
    ctx = RunContext(
        store=store,
        images=Images(store, pulls),
        run=run,
        netns=run.netns,
        services=list(pipeline.services),
        secrets=dict(options.secrets),
        events=events,
        registry_credentials=registry_credentials,
        registry_auth=pipeline.spec.registry_auth,
        allow_host_credentials=options.allow_host_credentials,
        allow_host_network=options.allow_host_network,
        cancel=options.cancel or Cancellation(),
    )
    env = {
        "CI": "true",
        "CI_RUN_ID": run.id,
        "CI_PIPELINE": pipeline.spec.name or pipeline.file.name,
        "CI_EVENT": options.event,
        "CI_WORKSPACE": MOUNT_POINT,
        **({"CI_BRANCH": options.branch} if options.branch else {}),
        **pipeline.spec.env,
        **options.env,
    }
    scheduler = _Scheduler(pipeline, ctx, env, options, selected)
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(remove_tree, run.workspace)
            create_workspace(
                options.source or pipeline.file.parent, run.workspace, exclude=[store.root]
            )
            try:
                with interrupts.deferred():  # no Ctrl-C between creation and registration
                    stack.enter_context(netns(run.netns))
                services = stack.enter_context(Services(ctx, env, pipeline.services))
                services.start()
                scheduler.run()
            except BaseException:
                with interrupts.deferred():
                    ctx.cancel.cancel()
                raise
        result.status = FAILURE if any(s.failed for s in scheduler.results.values()) else SUCCESS
    except ServiceError as e:
        result.status, result.error = FAILURE, str(e)
        scheduler.not_run("services failed")
    except BaseException as e:
        interrupted = isinstance(e, KeyboardInterrupt)
        result.status = CANCELLED if interrupted else FAILURE
        result.error = "interrupted" if interrupted else str(e) or type(e).__name__
        scheduler.not_run("cancelled")
        raise
    finally:
        result.steps = [scheduler.results[name] for name in selected if name in scheduler.results]
        result.duration = time.monotonic() - started
        result.pid = None
        run.write_record(result.to_json())
        pulls.close()
        hold.release()
        events.run_finished(result)
    return result


def _select(pipeline: Pipeline, options: RunOptions) -> list[str]:
    """The steps to run, checked: ``only`` and their dependencies, or all."""
    names = {step.name for step in pipeline.steps}
    unknown = [name for name in options.only if name not in names]
    if unknown:
        raise RunError(f"no step named {', '.join(map(repr, unknown))} in {pipeline.file}")
    selected = (
        pipeline.graph.with_dependencies(options.only) if options.only else pipeline.graph.order
    )
    wanted = {s for name in selected for s in pipeline.step(name).secrets}
    wanted.update(_registry_auth_names(pipeline, selected))
    missing = sorted(wanted - set(options.secrets))
    if missing:
        raise RunError(f"secrets not given: {', '.join(missing)} (use --secret)")
    if not options.allow_host_network:
        for name in selected:
            build = pipeline.step(name).build
            if build is not None and build.network == "host":
                raise RunError(
                    f"step {name!r} builds with the host's network, which this run does "
                    "not allow (--allow-host-network)"
                )
    return selected


def _registry_auth_names(pipeline: Pipeline, selected: Sequence[str]) -> set[str]:
    """The ``registry_auth`` secrets the pipeline and its selected build steps name."""
    names = {pipeline.spec.registry_auth} if pipeline.spec.registry_auth else set()
    for name in selected:
        build = pipeline.step(name).build
        if build is not None and build.registry_auth:
            names.add(build.registry_auth)
    return names


def _registry_credentials(
    pipeline: Pipeline, options: RunOptions, selected: Sequence[str]
) -> dict[str, dict[str, Credentials]]:
    """Each ``registry_auth`` secret, read as a docker config: host -> credentials."""
    from dockyard.registry.client.credentials import from_auth_config

    found = {}
    for name in sorted(_registry_auth_names(pipeline, selected)):
        try:
            found[name] = from_auth_config(options.secrets[name], f"secret {name}")
        except AuthError as e:
            raise RunError(f"{e} (registry_auth)") from None
    return found


class _Scheduler:
    """Starts steps as the schedule allows and collects their results."""

    def __init__(
        self,
        pipeline: Pipeline,
        ctx: RunContext,
        env: dict[str, str],
        options: RunOptions,
        selected: list[str],
    ):
        self.pipeline = pipeline
        self.ctx = ctx
        self.env = env
        self.options = options
        self.schedule = Schedule(pipeline.graph, selected)
        self.selected = selected
        self.results: dict[str, StepResult] = {}

    def run(self) -> None:
        """Run the selected steps; their results end up in :attr:`results`."""
        pool = ThreadPoolExecutor(max(1, self.options.parallel), thread_name_prefix="ci-step")
        running: dict[Future[StepResult], str] = {}
        try:
            while not self.schedule.done:
                for name in self.schedule.ready():
                    step = self.pipeline.step(name)
                    reason = step.when.skip_reason(
                        branch=self.options.branch,
                        event=self.options.event,
                        upstream_failed=self.schedule.upstream_failed(name),
                    )
                    if reason:
                        self._finish(StepResult(name, SKIPPED, reason=reason))
                        continue
                    self.ctx.events.step_started(name)
                    env = {**self.env, "CI_STEP_NAME": name}
                    future = pool.submit(run_step, self.ctx, step, env, self.pipeline.cache_key)
                    running[future] = name
                if not running:
                    continue  # only skips happened: look again
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    self._finish(future.result())
        except BaseException:
            with interrupts.deferred():
                self.ctx.cancel.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                for future, name in running.items():
                    if future.done() and not future.cancelled() and not future.exception():
                        self.results[name] = future.result()
            raise
        pool.shutdown()

    def not_run(self, reason: str) -> None:
        """Give every step without a result one: cancelled, for ``reason``."""
        for name in self.selected:
            self.results.setdefault(name, StepResult(name, CANCELLED, reason=reason))

    def _finish(self, result: StepResult) -> None:
        self.results[result.name] = result
        self.schedule.finish(result.name, failed=result.failed)
        self.ctx.events.step_finished(result)
