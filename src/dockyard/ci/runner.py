"""Running a pipeline locally: ``run_pipeline(load_pipeline(".dockyard.yml"))``.

A run, in order:

1. a run directory in the store (:mod:`.runs`) and the workspace, a copy of the
   pipeline's directory (:mod:`.workspace`);
2. the run's network namespace, with outbound NAT (:mod:`dockyard.runtime.nat`), and
   the pipeline's services that the selected steps use started in it, checked for
   readiness in the background (:mod:`.services`);
3. the steps, as their dependencies and their services allow (:mod:`.graph`), at most
   ``parallel`` at a time, each in a worker thread (:mod:`.steps`). Before a step
   starts, its ``when`` is checked: branch and event against the run's, and its status
   list against whether anything it waits for failed. Failed steps thus skip their
   dependants, and ``when: status: [failure]`` steps run after a failure. A service
   that failed counts as a failure for the steps that use it: only those that run on
   failure run, the others are cancelled (and count as failed for their dependants);
4. whatever happened (Ctrl-C included): every container killed, every mount and the
   namespace removed, the workspace deleted, the run's names of the images it built
   removed (:mod:`.images`), and ``run.json`` written. Until then the
   run and its caches are held from ``dockyard ci prune`` (see :mod:`.runs`).

Ctrl-C reaches the main thread, which cancels the run (see :mod:`.cancel`), waits for
the workers to clean up, and re-raises :class:`KeyboardInterrupt`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.ci.caches import cache_name
from dockyard.ci.cancel import Cancellation
from dockyard.ci.context import RunContext, credential_scope
from dockyard.ci.graph import Schedule
from dockyard.ci.images import Images
from dockyard.ci.pipeline import Pipeline, PipelineError, Service
from dockyard.ci.results import (
    CANCELLED,
    FAILURE,
    RUNNING,
    SKIPPED,
    SUCCESS,
    Events,
    RunResult,
    StepResult,
)
from dockyard.ci.runs import HOLDS_DIR, RunDir, next_run_number
from dockyard.ci.services import Services
from dockyard.ci.steps import run_step
from dockyard.ci.workspace import MOUNT_POINT, create_workspace
from dockyard.errors import AuthError, DockyardError
from dockyard.runtime import interrupts
from dockyard.runtime.mounts import remove_tree
from dockyard.runtime.nat import NAMESERVER, NatNetwork
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
    commit: str | None = None  # the commit the source is a checkout of, if known
    event: str = DEFAULT_EVENT
    only: Sequence[str] = ()  # run these steps (a matrix: all of it) and what they depend
    # on; default: all
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
    not a docker config; :class:`PipelineError` if the run's values of the built-in
    variables make the file invalid (see :mod:`.variables`).
    """
    options = options or RunOptions()
    events = events or Events()
    selected = _select(pipeline, options)
    registry_credentials = _registry_credentials(pipeline, options, selected)
    store = Store(options.store_root)
    hold = Hold(store.root / HOLDS_DIR)
    run = RunDir.create_held(store, hold)
    values = {
        "CI_RUN_ID": run.id,
        "CI_RUN_NUMBER": str(next_run_number(store.root, pipeline.cache_key)),
        "CI_COMMIT_SHA": options.commit or "",
        "CI_COMMIT_BRANCH": options.branch or "",
        "CI_EVENT": options.event,
        "CI_PIPELINE_DIR": MOUNT_POINT,
    }
    try:
        pipeline = pipeline.with_values(values)
    except PipelineError:
        hold.release()
        remove_tree(run.path)
        raise
    caches = {
        cache_name(pipeline.cache_key, path)
        for name in selected
        for path in pipeline.step(name).cache_paths
        if not pipeline.step(name).cache_files  # keyed ones: held when the step starts
    }
    with store.lease():  # see RunDir.create_held
        hold.add(sorted(caches))
    result = RunResult(
        id=run.id,
        pipeline=str(pipeline.file.absolute()),
        status=RUNNING,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        branch=options.branch,
        event=options.event,
        commit=options.commit,
        pid=os.getpid(),
    )
    run.write_record(result.to_json(), durable=False)  # the final one is synced
    pulls = credential_scope(  # for step and service images
        registry_credentials, pipeline.spec.registry_auth, options.allow_host_credentials
    )
    used = _services_used(pipeline, selected)
    ctx = RunContext(
        store=store,
        images=Images(store, pulls),
        run=run,
        netns=Path("/nonexistent"),  # set when the network exists
        services=list(used),
        secrets=dict(options.secrets),
        events=events,
        registry_credentials=registry_credentials,
        registry_auth=pipeline.spec.registry_auth,
        allow_host_credentials=options.allow_host_credentials,
        allow_host_network=options.allow_host_network,
        hold=hold,
        cancel=options.cancel or Cancellation(),
    )
    env = {
        "CI": "true",
        "CI_PIPELINE": pipeline.spec.name or pipeline.file.name,
        "CI_WORKSPACE": MOUNT_POINT,
        **({"CI_BRANCH": options.branch} if options.branch else {}),
        **values,  # CI_RUN_ID, CI_EVENT... (see .variables.BUILTIN)
        **pipeline.spec.variables,
        **pipeline.spec.env,
        **options.env,
    }
    scheduler = _Scheduler(pipeline, ctx, env, options, selected)

    def save_progress() -> None:  # the record lists steps as they start and end
        result.steps = [scheduler.results[name] for name in selected if name in scheduler.results]
        run.write_record(result.to_json(), durable=False)

    scheduler.on_change = save_progress
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(remove_tree, run.workspace)
            create_workspace(
                options.source or pipeline.file.parent, run.workspace, exclude=[store.root]
            )
            try:
                with interrupts.deferred():  # no Ctrl-C between creation and registration
                    network = stack.enter_context(NatNetwork())
                ctx.netns, ctx.dns = Path(network.path), (NAMESERVER,)
                stack.callback(ctx.images.forget_built)
                services = stack.enter_context(Services(ctx, env, used))
                scheduler.services = services
                result.services = services.timings
                services.launch()
                scheduler.run()
                result.error = services.failure_of(used)  # the failure steps have run
            except BaseException:
                with interrupts.deferred():
                    ctx.cancel.cancel()
                raise
        failed = result.error or any(s.failed for s in scheduler.results.values())
        result.status = FAILURE if failed else SUCCESS
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
    names = {step.name for step in pipeline.steps} | set(pipeline.matrices)
    unknown = [name for name in options.only if name not in names]
    if unknown:
        raise RunError(f"no step named {', '.join(map(repr, unknown))} in {pipeline.file}")
    only = [step for name in options.only for step in pipeline.steps_named(name)]
    selected = pipeline.graph.with_dependencies(only) if only else pipeline.graph.order
    wanted = {s for name in selected for s in pipeline.step(name).secrets}
    for service in [
        *_services_used(pipeline, selected).values(),
        *(s for name in selected for s in pipeline.step(name).own_services.values()),
    ]:
        wanted.update(service.secrets)
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


def _services_used(pipeline: Pipeline, selected: Sequence[str]) -> dict[str, Service]:
    """The pipeline's services that the ``selected`` steps wait for: those to start."""
    used = {n for step in selected for n in pipeline.step(step).uses(pipeline.services)}
    return {name: spec for name, spec in pipeline.services.items() if name in used}


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
        self.services: Services | None = None  # the pipeline's, once started
        self._ready_at: dict[str, float] = {}  # when a step was free to start but for services
        self._waited: dict[str, float] = {}  # how long a started step waited for services
        self.on_change: Callable[[], None] = lambda: None  # a step started or ended

    def run(self) -> None:
        """Run the selected steps; their results end up in :attr:`results`."""
        pool = ThreadPoolExecutor(max(1, self.options.parallel), thread_name_prefix="ci-step")
        running: dict[Future[StepResult], str] = {}
        waiting: dict[str, Sequence[str]] = {}  # ready steps -> the services they use
        try:
            while not self.schedule.done:
                for name in self.schedule.ready():
                    waiting[name] = self.pipeline.step(name).uses(self.pipeline.services)
                    self._ready_at[name] = time.monotonic()
                for name, uses in list(waiting.items()):
                    if self.services and not all(f.done() for f in self.services.settled(uses)):
                        continue
                    del waiting[name]
                    future = self._start(pool, name, uses)
                    if future is not None:
                        running[future] = name
                awaited: set[Future[Any]] = set(running)
                if self.services:
                    for uses in waiting.values():
                        awaited.update(f for f in self.services.settled(uses) if not f.done())
                if not awaited:
                    continue  # only skips happened: look again
                done, _ = wait(awaited, return_when=FIRST_COMPLETED)
                for future in done:
                    if future in running:
                        result = future.result()
                        del running[future]
                        if result.name in self._waited:
                            waited = self._waited[result.name] + result.timings.get("services", 0)
                            result.timings = {"services": waited, **result.timings}
                        self._finish(result)
        except BaseException:
            with interrupts.deferred():
                self.ctx.cancel.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                for future, name in running.items():
                    if future.done() and not future.cancelled() and not future.exception():
                        self.results[name] = future.result()
                    elif self.results[name].status == RUNNING:
                        del self.results[name]  # not_run says how it ended
            raise
        pool.shutdown()

    def _start(
        self, pool: ThreadPoolExecutor, name: str, uses: Sequence[str]
    ) -> Future[StepResult] | None:
        """Start step ``name``, whose services (``uses``) have settled, unless its
        ``when`` or a failed service says no."""
        step = self.pipeline.step(name)
        failed_services = self.services.failure_of(uses) if self.services else ""
        if failed_services and "failure" not in step.when.status:
            result = StepResult(name, CANCELLED, reason="services failed")
            self._finish(result, failed=True)  # its dependants do not run either
            return None
        reason = step.when.skip_reason(
            branch=self.options.branch,
            event=self.options.event,
            upstream_failed=bool(failed_services) or self.schedule.upstream_failed(name),
        )
        if reason:
            self._finish(StepResult(name, SKIPPED, reason=reason))
            return None
        if uses:
            self._waited[name] = time.monotonic() - self._ready_at[name]
        self.results[name] = StepResult(name, RUNNING)
        self.on_change()
        self.ctx.events.step_started(name)
        env = {**self.env, "CI_STEP_NAME": name}
        return pool.submit(run_step, self.ctx, step, env, self.pipeline.cache_key)

    def not_run(self, reason: str) -> None:
        """Give every step without a result one: cancelled, for ``reason``."""
        for name in self.selected:
            self.results.setdefault(name, StepResult(name, CANCELLED, reason=reason))

    def _finish(self, result: StepResult, *, failed: bool | None = None) -> None:
        """Record how a step ended; ``failed``: whether that counts as a failure for its
        dependants, if not as its status says."""
        self.results[result.name] = result
        self.schedule.finish(result.name, failed=result.failed if failed is None else failed)
        self.on_change()
        self.ctx.events.step_finished(result)
