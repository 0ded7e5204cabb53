"""Running one step: commands in a container, or an image build, and what it leaves.

A command step runs ``sh -e -c SCRIPT`` in a fresh rootfs of its image, in its
``workdir`` (default ``/workspace``), where the script echoes each command
(``+ make``) before running it and stops at the first that fails. A step without
commands runs its image's own command. Its cache dirs are bind-mounted; its
environment is the image's, then the ``CI_*`` and the file's variables, the
pipeline's ``env``, the step's, and its secrets last. A step with services of its own
runs with them in a network of its own (outbound NAT, as the run's), where they are
started, checked for readiness, and stopped after each attempt: two steps running at
once, say two combinations of a matrix, each have their own ``db`` on the same port.

A build step builds a Dockerfile of the workspace in-process into the store, where
later steps find the image by its tag; secrets go to the build's secret mounts
(``RUN --mount=type=secret``), never into a layer. Its context and Dockerfile
directory are opened inside the workspace (symlinks resolved inside it) when it
starts, and the builder reads only through those fds: a parallel step that swaps them
for symlinks to host directories meanwhile changes nothing the build sees; its
``cache_from``/``cache_to`` name registries only (a local directory is a host path).
Its registry access (base images, cache, push) uses its ``registry_auth`` secret's
credentials only (see :class:`~dockyard.registry.client.CredentialScope`). Its timeout
and a cancel kill the RUN step running at the time, silent or not; the build itself
stops at its next log line.

A check step runs the image gate (:mod:`dockyard.check`) on its image, the run's own
build of that name first, pulled into the store if missing, with a policy file read
beneath the workspace (``openat2(RESOLVE_BENEATH)``, a regular file only). Its
findings go to its log and, as JUnit XML, to its artifacts; they count as its tests,
and a rule of severity ``error`` that fails fails the step.

After a step its JUnit reports are counted and its artifacts copied into the run
directory, whether it succeeded or not (not if it was cancelled). That collection is
cancellable too, and bounded by the step's timeout: it has what is left of it, and at
least ``COLLECT_GRACE`` seconds so that a step that timed out still leaves its reports.
Past that, the step times out and what was copied so far stays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import io
import os
import posixpath
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.ci.caches import cache_dir, cache_name, files_key, locked
from dockyard.ci.cancel import Cancelled
from dockyard.ci.context import RunContext
from dockyard.ci.images import run_name
from dockyard.ci.output import OutputLog
from dockyard.ci.pipeline import Problem, Step, open_regular
from dockyard.ci.results import CANCELLED, FAILED, FAILURE, SUCCESS, TIMEOUT, StepResult
from dockyard.ci.services import ServiceError, Services
from dockyard.ci.workspace import MOUNT_POINT, collect_artifacts
from dockyard.errors import DockyardError
from dockyard.files import atomic
from dockyard.runtime import ContainerTimeout, Mount, container_config, interrupts
from dockyard.runtime.container import ContainerGroup
from dockyard.runtime.nat import NAMESERVER, NatNetwork

if TYPE_CHECKING:
    from dockyard.builder.confined import ConfinedDir, ConfinedFile
    from dockyard.check.policy import Policy

COLLECT_GRACE = 30.0
CHECK_REPORT = "check.xml"  # a check step's findings, as JUnit XML
MAX_PROBLEM_NOTES = 20  # a workspace full of FIFOs must not flood the log


_Caches = Callable[[], list[Mount]]  # a step's cache mounts, made on first use


class StepTimeout(Exception):
    """A build step, or the collection of a step's reports and artifacts, passed its timeout."""


def script(commands: tuple[str, ...]) -> str:
    """The shell script of ``commands``: each echoed as ``+ command``, then run."""
    return "".join(f"printf '+ %s\\n' {shlex.quote(c)}\n{c}\n" for c in commands)


def run_step(ctx: RunContext, step: Step, env: Mapping[str, str], cache_key: str) -> StepResult:
    """Run ``step`` to its end and report how it went.

    Never raises: any error fails the step (an unexpected one is named by its type in the reason).

    ``env`` holds the variables every step gets; ``cache_key`` keys its cache dirs.
    A step with ``retry`` runs again while it fails as its ``retry.when`` says, up to
    ``retry.count`` more times; every attempt is in its log and its result, and all
    use the cache dirs the first one found (key files are read once, when it starts).
    """
    log = OutputLog(step.name, ctx.run.step_log(step.name), ctx.masked, ctx.events)
    started = time.monotonic()
    earlier: list[StepResult] = []
    caches = functools.cache(functools.partial(_cache_mounts, ctx, step, cache_key))
    result, deadline, services_failed = _attempt(ctx, step, env, caches, log)
    while step.retry is not None and len(earlier) < step.retry.count:
        if ctx.cancel.cancelled or not step.retry.matches(
            result.status, result.exit_code, service_failed=services_failed
        ):
            break
        log.note(f"attempt {len(earlier) + 1}: {_summary(result)}; retrying")
        earlier.append(result)
        result, deadline, services_failed = _attempt(ctx, step, env, caches, log)
    collecting = time.monotonic()
    try:
        if result.status != CANCELLED:
            _collect(ctx, step, result, log, deadline)
    except (Cancelled, StepTimeout) as e:
        timeout = isinstance(e, StepTimeout)
        result.status = TIMEOUT if timeout else CANCELLED
        result.reason = f"timed out after {step.timeout:g}s" if timeout else "cancelled"
        log.note(f"collecting reports and artifacts stopped: {result.reason}")
    finally:
        if step.reports.junit or step.artifacts:
            result.timings["collect"] = time.monotonic() - collecting
        result.attempts = [*earlier, result] if earlier else []
        result.duration = time.monotonic() - started
        result.ignored = result.status in FAILED and step.failure == "ignore"
        log.note(_summary(result))
        log.close()
    return result


def _attempt(
    ctx: RunContext, step: Step, env: Mapping[str, str], caches: _Caches, log: OutputLog
) -> tuple[StepResult, float | None, bool]:
    """Run ``step`` once: how it went, the deadline it had (by its timeout), and whether
    its own services failed."""
    result = StepResult(step.name, FAILURE)
    started = time.monotonic()
    deadline = started + step.timeout if step.timeout else None
    services_failed = False
    try:
        if step.build is not None:
            building = time.monotonic()
            try:
                secrets = {n: ctx.secrets[n] for n in step.secrets}
                result.build_steps = _build(ctx, step, secrets, log, deadline)
                for name, seconds in result.build_steps:
                    log.note(f"{seconds:.1f}s {name}")
            finally:
                result.timings["run"] = time.monotonic() - building
            result.exit_code = 0
        elif step.check is not None:
            result.exit_code = _check(ctx, step, log, result)
        else:
            step_env = {**env, **step.environment, **{n: ctx.secrets[n] for n in step.secrets}}
            with _own_services(ctx, step, env, result) as step_ctx:
                result.exit_code = _commands(step_ctx, step, step_env, caches, log, result)
        result.status = SUCCESS if result.exit_code == 0 else FAILURE
        if result.exit_code and step.check is not None:
            result.reason = "a rule of severity error failed"
        elif result.exit_code:
            result.reason = f"exit code {result.exit_code}"
    except ServiceError as e:
        services_failed = not ctx.cancel.cancelled
        result.status, result.reason = (
            (FAILURE, str(e)) if services_failed else (CANCELLED, "cancelled")
        )
        log.note(f"services failed: {e}" if services_failed else "cancelled")
    except Exception as e:
        if ctx.cancel.cancelled:
            result.status, result.reason = CANCELLED, "cancelled"
        elif isinstance(e, ContainerTimeout | StepTimeout) or (
            step.build is not None and deadline is not None and time.monotonic() > deadline
        ):  # a build may wrap the StepTimeout its log raised
            result.status, result.reason = TIMEOUT, f"timed out after {step.timeout:g}s"
        else:
            detail = (
                str(e) if isinstance(e, DockyardError | OSError) else f"{type(e).__name__}: {e}"
            )
            result.reason = detail.splitlines()[0] if detail else type(e).__name__
            log.note(f"error: {detail}")
    result.duration = time.monotonic() - started
    return result, deadline, services_failed


def _cache_mounts(ctx: RunContext, step: Step, cache_key: str) -> list[Mount]:
    """The bind mounts of ``step``'s cache dirs, held, their key files read now."""
    files = files_key(ctx.run.workspace, step.cache_files)
    if files and ctx.hold is not None:  # named only now: held before its first use
        with ctx.store.lease():
            ctx.hold.add([cache_name(cache_key, path, files) for path in step.cache_paths])
    return [
        Mount.bind(str(cache_dir(ctx.store.root, cache_key, path, files)), path)
        for path in step.cache_paths
    ]


@contextlib.contextmanager
def _own_services(
    ctx: RunContext, step: Step, env: Mapping[str, str], result: StepResult
) -> Iterator[RunContext]:
    """The context ``step`` runs in: the run's, or, if it has services of its own, one
    with a network of its own where they run, ready (:class:`ServiceError` if not).
    How long they took goes into ``result``."""
    if not step.own_services:
        yield ctx
        return
    with contextlib.ExitStack() as stack:
        with interrupts.deferred():  # no Ctrl-C between creation and registration
            network = stack.enter_context(NatNetwork())
        own = dataclasses.replace(
            ctx, netns=Path(network.path), services=list(step.own_services), dns=(NAMESERVER,)
        )
        services = stack.enter_context(Services(own, env, step.own_services, label=f"{step.name}."))
        result.services = services.timings
        started = time.monotonic()
        try:
            services.start()
        finally:
            result.timings["services"] = time.monotonic() - started
        yield own


def _commands(
    ctx: RunContext,
    step: Step,
    env: Mapping[str, str],
    caches: _Caches,
    log: OutputLog,
    result: StepResult,
) -> int:
    """Run the step's commands; how long pulling and running took goes into ``result``."""
    assert step.image is not None
    started = time.monotonic()
    try:
        image = ctx.images.get(step.image, log.note)
    finally:
        result.timings["pull"] = time.monotonic() - started
    config = container_config(
        image.config,
        args=("-e", "-c", script(step.commands)) if step.commands else (),
        entrypoint="/bin/sh" if step.commands else None,
        env=env,
        workdir=step.workdir or MOUNT_POINT,
        base=ctx.base_config(step.name, caches(), network=step.network),
    )
    with ctx.images.rootfs(image) as rootfs:
        waiting = time.monotonic()
        deadline = waiting + step.timeout if step.timeout else None
        with _locked_caches(ctx, step, caches, log, deadline):
            started = time.monotonic()
            timeout = None if deadline is None else max(deadline - started, 0.001)
            try:
                return ctx.cancel.run(
                    rootfs, config, root=ctx.store.root, timeout=timeout, on_output=log
                )
            finally:
                result.timings["run"] = time.monotonic() - started


def _locked_caches(
    ctx: RunContext, step: Step, caches: _Caches, log: OutputLog, deadline: float | None
) -> contextlib.AbstractContextManager[None]:
    """Hold ``step``'s cache dirs if it uses them one step at a time (``sharing: locked``);
    StepTimeout if ``deadline`` passes while it waits for them (the wait and the run share
    its timeout)."""
    if not step.cache_locked:
        return contextlib.nullcontext()

    def wait(seconds: float) -> None:
        if ctx.cancel.wait(seconds):
            raise Cancelled
        if deadline is not None and time.monotonic() > deadline:
            raise StepTimeout

    return locked({m.destination: Path(m.source) for m in caches()}, wait, log.note)


def _build(
    ctx: RunContext,
    step: Step,
    secrets: Mapping[str, str],
    log: OutputLog,
    deadline: float | None,
) -> list[tuple[str, float]]:
    """Build the image of ``step`` under the run's own name for it (see :mod:`.images`);
    name it by its tags in the store (``keep``) or a registry (``push``) if asked.
    Return how long each of its steps took."""
    from dockyard.builder.builder import BuildOptions
    from dockyard.builder.builder import build as build_image
    from dockyard.builder.cache_export import check_location
    from dockyard.builder.confined import ConfinedDir

    build = step.build
    assert build is not None
    name = run_name(ctx.run.id, step.name)
    for spec in (*build.cache_from, *([build.cache_to] if build.cache_to else [])):
        check_location(spec, registry_only=True)  # type=local would be a host path

    def line(text: str) -> None:  # the builder's log; the one place to stop it
        ctx.cancel.check()
        if deadline is not None and time.monotonic() > deadline:
            raise StepTimeout
        log.line(text)

    # Its pulls, cache import/export and pushes use the run's registry_auth, never
    # (unless the operator allows it) the host's logins.
    credentials = ctx.credential_scope(build.registry_auth)
    with contextlib.closing(credentials), credentials.active():
        with contextlib.ExitStack() as stack:
            workspace = stack.enter_context(ConfinedDir.open(ctx.run.workspace, "workspace"))
            options = BuildOptions(
                context=stack.enter_context(workspace.subdir(build.context)),
                dockerfile=_dockerfile(workspace, build.dockerfile, stack),
                tags=[name],
                build_args=dict(build.build_args),
                secrets={name: value.encode() for name, value in secrets.items()},
                cache_from=list(build.cache_from),
                cache_to=build.cache_to,
                network=build.network,
                allow_network_host=ctx.allow_host_network,
            )
            with ctx.cancel.group() as runs, _killed_at(runs, deadline):
                built = build_image(ctx.store, options, log=line)
        descriptor = ctx.images.built(name, list(build.tags))
        log.note(f"built {built.digest}" + "".join(f", tagged {t} in this run" for t in build.tags))
        if build.keep:
            for tag in build.tags:
                ctx.store.tag(tag, descriptor)
                log.note(f"tagged {tag} in the store")
        if build.push:
            from dockyard.registry.client import RegistryDestination, client_for
            from dockyard.transfer.convert import plan
            from dockyard.transfer.copy import copy_image

            for tag in build.tags:  # plain-tar layers gzipped, as `dockyard push` does
                ctx.cancel.check()
                log.note(f"pushing {tag}")
                destination = RegistryDestination(client_for(tag), tag)
                copy_image(ctx.store.source(name), destination, conversion=plan("docker"))
    return built.timings


def _check(ctx: RunContext, step: Step, log: OutputLog, result: StepResult) -> int:
    """Run the image gate of ``step`` (:mod:`dockyard.check`) on its image, the run's
    own build of that name first; log its findings, write them as a JUnit report
    (``CHECK_REPORT`` among the step's artifacts) and count them as tests. Return 1 if
    a rule of severity error failed, else 0."""
    from dockyard.check import report
    from dockyard.check.image import open_image, open_source_image
    from dockyard.check.policy import DEFAULT_POLICY
    from dockyard.check.run import check_image

    spec = step.check
    assert spec is not None
    policy = _read_policy(ctx.run.workspace, spec.policy) if spec.policy else DEFAULT_POLICY
    started = time.monotonic()
    try:
        stored, _ = ctx.images.pull(spec.image, log.note)
    finally:
        result.timings["pull"] = time.monotonic() - started
    started = time.monotonic()
    try:
        with ctx.images.credentials.active():  # an allowed base may be a registry's
            image = open_source_image(str(spec.image), ctx.store.source(stored))
            checked = check_image(
                image, policy, lambda name: open_image(name, store_root=ctx.store.root)
            )
    finally:
        result.timings["run"] = time.monotonic() - started
    for line in report.text([checked]).splitlines():
        log.line(line)
    xml = report.junit([checked], policy.enabled()).encode()
    target = ctx.run.artifacts(step.name)
    target.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(target / CHECK_REPORT, xml)
    from dockyard.ci.junit import parse_junit

    result.tests = parse_junit(io.BytesIO(xml))
    log.note(f"report: {CHECK_REPORT} among the step's artifacts")
    return 1 if checked.failed else 0


def _read_policy(workspace: Path, relative: str) -> Policy:
    """The policy file ``relative`` of the workspace, opened beneath it (a symlink out of
    it is refused, as is anything but a regular file): a step may have put anything
    there. Raise :class:`PolicyError` naming the file (and line) if it is invalid."""
    from dockyard.check.policy import MAX_FILE_SIZE, PolicyError, policy_from_bytes

    try:
        fd = open_regular(workspace / relative, workspace)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        reason = "it leads out of the workspace" if e.errno == errno.EXDEV else e.strerror
        raise PolicyError(relative, [Problem("", f"cannot read: {reason}", None)]) from None
    return policy_from_bytes(data, relative)


@contextlib.contextmanager
def _killed_at(group: ContainerGroup, deadline: float | None) -> Iterator[None]:
    """Kill ``group`` at ``deadline`` (a ``time.monotonic()`` time) if the block is
    still running then."""
    if deadline is None:
        yield
        return
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), group.kill)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()


def _collect(
    ctx: RunContext, step: Step, result: StepResult, log: OutputLog, deadline: float | None
) -> None:
    """Count the step's test reports and copy its artifacts out of the workspace;
    raise :class:`Cancelled` or :class:`StepTimeout` if stopped."""
    if deadline is not None:
        deadline = max(deadline, time.monotonic() + COLLECT_GRACE)

    def check() -> None:
        ctx.cancel.check()
        if deadline is not None and time.monotonic() > deadline:
            raise StepTimeout

    if step.reports.junit:
        from dockyard.ci.junit import read_reports  # its XML parser only for steps with reports

        result.tests, problems = read_reports(ctx.run.workspace, step.reports.junit, check=check)
        _notes(log, problems, "")
        tests = result.tests
        log.note(f"tests: {tests.passed} passed, {tests.failed} failed, {tests.skipped} skipped")
    if step.artifacts:
        target = ctx.run.artifacts(step.name)
        try:
            result.artifacts, problems = collect_artifacts(
                ctx.run.workspace, step.artifacts, target, check=check
            )
            _notes(log, problems, "artifact ")
        except OSError as e:
            log.note(f"artifacts: {e}")
        log.note(f"artifacts: {len(result.artifacts)} paths saved in {target}")


def _dockerfile(
    workspace: ConfinedDir, relative: str | None, stack: contextlib.ExitStack
) -> ConfinedFile | None:
    """A build's ``dockerfile:``, in its directory opened inside the workspace."""
    if relative is None:
        return None  # the builder reads Dockerfile in the context
    directory, name = posixpath.split(posixpath.normpath(relative))
    from dockyard.builder.confined import ConfinedFile

    return ConfinedFile(stack.enter_context(workspace.subdir(directory)), name)


def _notes(log: OutputLog, problems: list[str], prefix: str) -> None:
    """Note the first ``MAX_PROBLEM_NOTES`` problems, and how many more there were."""
    for problem in problems[:MAX_PROBLEM_NOTES]:
        log.note(prefix + problem)
    if len(problems) > MAX_PROBLEM_NOTES:
        log.note(f"... and {len(problems) - MAX_PROBLEM_NOTES} more")


def _summary(result: StepResult) -> str:
    text = f"{result.status} in {result.duration:.1f}s"
    if result.reason and result.status != SUCCESS:
        text += f" ({result.reason})"
    return text + (", ignored" if result.ignored else "")
