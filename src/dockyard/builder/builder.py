"""``dockyard build``: a Dockerfile becomes an image in the store, with no daemon.

The frontend gives a stage graph; stages whose dependencies are done run in parallel.
Each instruction either changes the config (ENV, CMD, ...: no layer) or changes files
(RUN, COPY, ADD, WORKDIR): those are looked up in the build cache by a key made of the
parent state's content identity and what the step does, and executed in an overlay
only on a miss. A miss does not stop later lookups: a step whose parent came out
identical to a cached one hits again.

The build context and the Dockerfile's directory are opened once, when the build
starts, and read only through those fds (:mod:`.confined`): the Dockerfile, the ignore
file, COPY/ADD sources and RUN bind-mount sources all resolve inside them, however
their paths change while the build runs.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard import reference
from dockyard.builder.cache import BuildCache, CacheRecord, step_key
from dockyard.builder.confined import ConfinedDir, ConfinedFile
from dockyard.builder.context import BuildContext, ContextIndex, IgnoreCheck
from dockyard.builder.frontend import commands as ins
from dockyard.builder.frontend.dockerignore import IgnoreMatcher
from dockyard.builder.frontend.stages import BuildPlan, Stage, StageScope, plan_build
from dockyard.builder.image import HISTORY_COMMENT, apply_metadata, scratch
from dockyard.builder.step_names import StepNames
from dockyard.errors import BuildError, NotFound
from dockyard.files import atomic
from dockyard.oci import manifest as manifests
from dockyard.oci.config import DEFAULT_PATH
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.home import RawManifest
from dockyard.oci.mutate import ImageState
from dockyard.reference import Reference
from dockyard.store import Store

if TYPE_CHECKING:
    from dockyard.builder.copier import CopyPlan
    from dockyard.builder.frontend.runmount import Mount
    from dockyard.builder.lineage import LastRun, StepLineage
    from dockyard.builder.steps import StepLayer, StepRunner
    from dockyard.runtime import config as runtime_config
    from dockyard.runtime.nat import NatNetwork

Log = Callable[[str], None]

FROM_DIGESTS_DIR = "build/from-digests"
DETACHED_PARENT = "detached"
"""The parent identity in the cache key of a step whose layer ignores its parent."""


@dataclass
class BuildOptions:
    """What ``dockyard build`` takes; see the CLI for each option's meaning."""

    context: Path | ConfinedDir  # a directory held open: a pipeline's, in its workspace
    dockerfile: Path | ConfinedFile | None = None  # default: Dockerfile in the context
    tags: list[Reference] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    secrets: dict[str, bytes] = field(default_factory=dict)
    no_cache: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "default"  # of RUN steps: default (private, outbound NAT) | none | host
    allow_network_host: bool = False  # honour RUN --network=host (BuildKit's network.host)
    platform: Platform | None = None
    source_date_epoch: int | None = None
    cache_from: list[str] = field(default_factory=list)
    cache_to: str | None = None


@dataclass
class BuildResult:
    """The built image and how its build went.

    Its manifest (in the store) and config, the steps the cache served and ran, how long
    each step took, and the images the build read (``FROM``, ``COPY --from``,
    ``RUN --mount=from``) by the name it used and the stored manifest it found or pulled
    (what ``build --capture`` saves).
    """

    manifest: manifests.Manifest
    config: bytes
    cached: int = 0
    executed: int = 0
    images: dict[Reference, Descriptor] = field(default_factory=dict)
    # each step (as the log names it: "[2/3] RUN make") and its seconds, in start order
    timings: list[tuple[str, float]] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def image_id(self) -> str:
        return self.manifest.config.digest


@dataclass
class StageState:
    """One stage while it runs, and after (BuildKit's ``dispatchState``).

    Its image, its variables, and the plan and stages done that its ``--from`` names
    resolve in.
    """

    stage: Stage
    state: ImageState
    scope: StageScope
    plan: BuildPlan
    done: dict[int, StageState]  # the build's finished stages, by index
    cmd_set: bool = False  # a CMD ran in this stage: a later ENTRYPOINT keeps it
    nat_runs_ahead: int = 0  # RUN steps on the build's NAT network still to come

    def history(self, created_by: str, created: str | None = None) -> None:
        """A history entry of a step that made no layer.

        ``created`` is None: a config-only step, timed by the layers around it (see
        :meth:`ImageState.finish`).
        """
        self.state.add_history(created_by, created, empty_layer=True, comment=HISTORY_COMMENT)

    def layer(self, record: CacheRecord, created_by: str, created: str) -> None:
        """The layer a cached or executed step gave (none: a history entry only)."""
        if record.layer is None or record.diff_id is None:
            self.history(created_by, created)
        else:
            self.state.add_layer(
                record.layer, record.diff_id, created_by, created, comment=HISTORY_COMMENT
            )


class Builder:
    """One build against one store."""

    def __init__(self, store: Store, options: BuildOptions, log: Log | None = None):
        self.store = store
        self.options = options
        self.log = log or (lambda line: None)
        self.cache = BuildCache(store.root)
        self.blob_hold = store.blob_hold()
        epoch = self.source_date_epoch = _source_date_epoch(options)
        when = datetime.fromtimestamp(epoch, UTC) if epoch is not None else datetime.now(UTC)
        self.created = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        self._counts = {"cached": 0, "executed": 0}
        self._lock = threading.Lock()
        self._context: BuildContext | None = None
        self._dockerfile: ConfinedFile | None = None
        self._nat: NatNetwork | None = None  # shared by the build's RUN steps, made on first use
        self._nat_maker: threading.Thread | None = None  # making it ahead (see _start_nat)
        self._steps: StepRunner | None = None
        self._lineage: StepLineage | None = None
        self._emptied_cache_mounts: set[str] = set()  # --no-cache: emptied once per build
        self._images: dict[Reference, Descriptor] = {}  # every image read, see BuildResult
        self._timings: list[tuple[float, str, float]] = []  # started, step, seconds

    # what only a step that runs needs: made (and imported) on first use, so that a
    # build whose steps all hit loads no snapshot, overlay, packing or runtime code

    @property
    def steps(self) -> StepRunner:
        """Overlays, snapshots and layer packing for this build's steps and views."""
        with self._lock:
            if self._steps is None:
                from dockyard.builder.steps import StepRunner
                from dockyard.runtime.snapshots import Snapshots

                self._steps = StepRunner(
                    self.store,
                    Snapshots(self.store),
                    self.blob_hold,
                    source_date_epoch=self.source_date_epoch,
                )
            return self._steps

    @property
    def lineage(self) -> StepLineage:
        """The last runs of steps (see :mod:`.lineage`)."""
        with self._lock:
            if self._lineage is None:
                from dockyard.builder.lineage import StepLineage

                self._lineage = StepLineage(self.store.root)
            return self._lineage

    # the whole build

    def build(self) -> BuildResult:
        """Build the image.

        The layer blobs it writes or reuses are named only at its end; until then they
        are in a blob hold, which a prune spares.
        """
        try:
            if self.options.cache_to:  # a bad value fails before any step runs
                from dockyard.builder.cache_export import check_location

                check_location(self.options.cache_to)
            with ExitStack() as stack:
                context_dir = self.options.context
                if not isinstance(context_dir, ConfinedDir):
                    context_dir = stack.enter_context(ConfinedDir.open(context_dir))
                self._dockerfile = _dockerfile_in(context_dir, self.options.dockerfile, stack)
                return self._build(context_dir, self._dockerfile)
        finally:
            self.blob_hold.release()
            if self._nat_maker is not None:
                self._nat_maker.join()
            if self._nat is not None:
                self._nat.close()

    def _build(self, context_dir: ConfinedDir, dockerfile: ConfinedFile) -> BuildResult:
        plan = self._plan(dockerfile)
        self._context = BuildContext(
            context_dir,
            *_ignore(context_dir, dockerfile),
            index=ContextIndex(self.store.root, context_dir.path),
        )
        self._import_cache()
        done = self._run_stages(plan)
        config, manifest = self._finish(done[plan.target.index].state)
        self._context.save_index()
        if self.options.cache_to:
            from dockyard.builder.cache_export import export_cache

            export_cache(self.store, self.cache.used, self.options.cache_to, self.log)
        timings = [(step, seconds) for _, step, seconds in sorted(self._timings)]
        return BuildResult(
            manifest,
            config,
            self._counts["cached"],
            self._counts["executed"],
            dict(self._images),
            timings,
        )

    def _plan(self, dockerfile: ConfinedFile) -> BuildPlan:
        """The Dockerfile read and planned for the build's platform; its warnings logged."""
        text, read = _read_dockerfile(dockerfile)
        plan = plan_build(
            text,
            file=str(read.path),
            build_args=self.options.build_args,
            target=self.options.target,
            platform=_frontend_platform(self.options.platform or Platform.host()),
        )
        for warning in plan.warnings:
            self.log(f"warning: {warning}")
        return plan

    def _import_cache(self) -> None:
        """The ``--cache-from`` records, added to the local cache before any lookup."""
        if self.options.cache_from:
            from dockyard.builder.cache_export import import_cache

            for ref in self.options.cache_from:
                import_cache(self.cache, ref, self.log)

    def _run_stages(self, plan: BuildPlan) -> dict[int, StageState]:
        """Every stage the target needs, level by level; the stages of a level in
        parallel (their dependencies are all in earlier levels)."""
        done: dict[int, StageState] = {}
        with ExitStack() as stack:
            pool = None  # made for the first level of parallel stages
            for level in plan.levels:
                if len(level) == 1:  # nothing to overlap with: stay on this thread
                    done[level[0].index] = self._stage(plan, level[0], done)
                    continue
                if pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    pool = stack.enter_context(ThreadPoolExecutor(max_workers=2))
                # Each stage runs in a copy of this thread's context: a container group
                # set by the caller (to cancel the build) then covers its RUN steps too.
                futures = {
                    s.index: pool.submit(contextvars.copy_context().run, self._stage, plan, s, done)
                    for s in level
                }
                for index, future in futures.items():
                    done[index] = future.result()
        return done

    def _finish(self, state: ImageState) -> tuple[bytes, manifests.Manifest]:
        """The target stage's image with the ``--label``s, stored and named."""
        if self.options.labels:
            state.add_labels(self.options.labels)
        config, manifest = state.finish(self.created, fixed=self.source_date_epoch is not None)
        with self.store.lease():
            self.store.blobs.write_bytes(config)
            self._name(manifest)
        return config, manifest

    def _name(self, manifest: manifests.Manifest) -> None:
        names = self.options.tags or [
            Reference("localhost", "dockyard-build", digest=manifest.digest)
        ]
        raw = RawManifest(manifest.raw, manifest.media_type)
        for ref in names:
            destination = self.store.destination(ref)
            destination.put_manifest(raw, root=True)
            destination.commit()

    # stages

    def _stage(self, plan: BuildPlan, stage: Stage, done: dict[int, StageState]) -> StageState:
        started = time.monotonic()
        d = self._start_stage(plan, stage, done)
        pulled = time.monotonic() - started  # the base image's, for its FROM step
        onbuild = d.state.take_onbuild()  # triggers fire once, in the first child
        from_image = stage.base_stage is None and not stage.is_scratch
        triggers = plan.image_triggers(stage, onbuild) if from_image else stage.triggers
        names = StepNames(stage, triggers, len(plan.stages))
        if from_image:
            line = names.base(stage.base)
            self.log(line)
            self._timings.append((started, line, pulled))
        if "PATH" not in d.state.env and not d.state.is_windows:
            d.state.set_env("PATH", DEFAULT_PATH)  # as BuildKit: PATH is always set (not Windows)
        instructions = [*triggers, *stage.instructions]
        d.nat_runs_ahead = sum(map(self._on_nat, instructions))
        for number, instr in enumerate(instructions, 1):
            expanded = d.scope.apply(instr)
            step = names.step(expanded, d.scope.env, trigger=number <= len(triggers))
            if step is not None:
                self.log(step)
            started = time.monotonic()
            d.nat_runs_ahead -= self._on_nat(instr)
            self._instruction(d, expanded)
            if step is not None:
                self._timings.append((started, step, time.monotonic() - started))
        return d

    def _start_stage(
        self, plan: BuildPlan, stage: Stage, done: dict[int, StageState]
    ) -> StageState:
        """The stage's state at its FROM: a copy of its base stage's, scratch, or the base
        image's (from the store, or pulled)."""
        if stage.base_stage is not None:
            base = done[stage.base_stage]
            scope = plan.scope(stage, base=base.scope)
            return StageState(stage, base.state.copy(), scope, plan, done)
        if stage.is_scratch:
            state = scratch(self.options.platform or Platform.host())
            return StageState(stage, state, plan.scope(stage), plan, done)
        state = self._image_state(stage.base, stage.from_)
        scope = plan.scope(stage, image_env=state.config.get("Env") or [])
        return StageState(stage, state, scope, plan, done)

    def _image_state(self, name: str, instr: ins.Instruction) -> ImageState:
        """The base image ``name``, from the store or pulled into it."""
        try:
            ref = reference.parse(name)
        except Exception as e:
            raise instr.error(str(e)) from None
        platform = self.options.platform or Platform.host()
        try:
            desc = self.store.resolve(ref)
        except NotFound:  # pulling needs the registry client: imported only then
            from dockyard.transfer.pull import ensure_image

            desc = ensure_image(self.store, ref, platform=platform, note=self.log)
        with self._lock:
            self._images[ref] = desc
        manifest = self.store.image_manifest(desc, platform)
        if manifest is None:
            raise instr.error(f"{ref} has no image for platform {platform}")
        return ImageState.from_image(
            self.store.read_config(manifest), list(manifest.layers), manifest.digest
        )

    # instructions

    def _instruction(self, d: StageState, instr: ins.Instruction) -> None:
        match instr:
            case ins.Run():
                self._run(d, instr)
            case ins.Copy() | ins.Add():
                self._copy(d, instr)
            case ins.Workdir():
                workdir = instr.resolve(d.state.workdir)
                d.state.set_workdir(workdir)
                self._workdir(d, instr, workdir)
            case ins.Arg():
                d.history(instr.created_by())
            case _:
                if isinstance(instr, ins.Cmd):
                    d.cmd_set = True
                elif isinstance(instr, ins.Entrypoint) and not d.cmd_set:
                    d.state.set_cmd(None)  # docker: ENTRYPOINT resets a CMD of the base
                history = apply_metadata(d.state, instr)
                if history is not None:  # its time: the layers' around it
                    d.history(history)

    def _layer_step(
        self,
        d: StageState,
        payload: dict[str, Any],
        created_by: str,
        execute: Callable[[LastRun | None, bool], StepLayer],
        *,
        detached: bool = False,
    ) -> None:
        """Look the step up in the cache; execute it on a miss; add its layer (if any).

        A ``detached`` step's layer does not depend on the stage's state (``COPY --link``), so
        neither does its key: it hits after the layers below it changed.

        ``execute`` gets the step's last run (see :mod:`.lineage`) and whether that
        run's layer may be kept if this one makes the same files: when the inputs but
        the starting state are the same, and ``--no-cache`` was not asked for."""
        payload = {**payload, "source_date_epoch": self.source_date_epoch}  # layer times
        key = step_key(DETACHED_PARENT if detached else d.state.identity(), payload)
        record = None if self.options.no_cache else self._cached(key)
        if record is not None:
            self.log("  CACHED")
            kind = "cached"
        else:
            assert self._context is not None and self._dockerfile is not None
            place = self.lineage.key(
                self._context.path, self._dockerfile.path, created_by, d.state.workdir
            )
            if d.nat_runs_ahead:  # they follow a step that runs, so they most likely run too
                self._start_nat()
            inputs = step_key("inputs", payload)
            last = self.lineage.get(place)
            keep = last is not None and last.inputs == inputs and not self.options.no_cache
            result = execute(last, keep)
            packed = result.packed
            if result.kept:
                self.log("  same files as the last run: its layer is kept")
            if packed is not None and result.chain is not None:
                from dockyard.builder.lineage import LastRun

                self.lineage.put(place, LastRun(result.chain, packed, inputs, result.copy))
            record = CacheRecord(
                key,
                packed.descriptor() if packed else None,
                packed.diff_id if packed else None,
                created=self.created,
            )
            self.cache.put(record)
            kind = "executed"
        with self._lock:
            self._counts[kind] += 1
        # A hit keeps the time its layer was made: a rebuild that changes nothing gives
        # the same image, as BuildKit's (records from before times were kept: now).
        d.layer(record, created_by, record.created or self.created)

    def _cached(self, key: str) -> CacheRecord | None:
        found = self.cache.get(key)
        if found is None:
            return None
        record, origin = found
        if record.layer is None:
            return record
        with self.store.lease():  # so that the blob found is the blob held
            if not self.store.blobs.has(record.layer.digest):
                if origin is None:
                    return None  # the blob was pruned: a miss
                from dockyard.builder.cache_export import fetch_blob

                fetch_blob(self.store, origin, record.layer)
            self.blob_hold.add([record.layer.digest])
        return record

    def _run(self, d: StageState, instr: ins.Run) -> None:
        state, scope = d.state, d.scope
        args, script = instr.command_line(state.shell or ins.DEFAULT_SHELL)
        workdir = state.workdir
        network = self._network(instr)
        mounts = instr.mounts or ()
        mount_keys = [self._mount_key(d, instr, m, workdir) for m in mounts]
        payload = {
            "op": "RUN",
            "args": args,
            "build_args": scope.history_args(),
            "network": network,
            "security": instr.security,
            "mounts": mount_keys,
            "script": script.data if script else None,
        }
        created_by = instr.created_by(args, scope.history_args())

        def execute(last: LastRun | None, keep: bool) -> StepLayer:
            from dockyard.builder.steps import OutputTail, run_failed
            from dockyard.runtime import config as runtime_config

            tail = OutputTail(lambda line: self.log(f"  {line}"))
            exit_code = 0

            def work(fs) -> None:
                nonlocal exit_code
                with ExitStack() as stack:
                    extra_env: dict[str, str] = {}
                    specs = [self._mount(d, instr, m, workdir, stack, extra_env) for m in mounts]
                    if script is not None:
                        specs.append(self._script_mount(script, stack))
                    from dockyard.runtime.container import run

                    container = runtime_config.ContainerConfig(
                        args=args,
                        env=scope.run_env() | extra_env,
                        cwd=workdir,
                        user=state.user,
                        network=runtime_config.HOST if network == "host" else runtime_config.NONE,
                        mounts=[s for s in specs if s is not None],
                    )
                    if network == "default":
                        container = self._nat_network().apply(container)
                    exit_code = run(
                        fs.merged,
                        container,
                        root=self.store.root,
                        on_output=tail,
                    )
                if exit_code != 0:
                    raise run_failed(instr, args, exit_code, tail.lines())

            return self.steps.change(state, work, last=last, keep_if_same=keep)

        self._layer_step(d, payload, created_by, execute)

    def _network(self, instr: ins.Run) -> str:
        """The network a RUN step runs in: its own ``--network``, else the build's.
        ``--network=host`` needs the operator's leave, as BuildKit's entitlement."""
        if instr.network == "default":
            return self.options.network
        if instr.network == "host" and not (
            self.options.allow_network_host or self.options.network == "host"
        ):
            raise instr.error(
                "RUN --network=host is not allowed: the operator must grant network.host"
            )
        return instr.network

    def _on_nat(self, instr: ins.Instruction) -> bool:
        """Is ``instr`` a RUN step on the build's NAT network (see :meth:`_network`)?"""
        if not isinstance(instr, ins.Run):
            return False
        return (self.options.network if instr.network == "default" else instr.network) == "default"

    def _nat_network(self) -> NatNetwork:
        """The build's private network with outbound NAT, made on first use (or ahead)."""
        if self._nat_maker is not None:
            self._nat_maker.join()
        with self._lock:
            if self._nat is None:  # not made ahead, or that failed: the error is raised here
                from dockyard.runtime.nat import NatNetwork

                self._nat = NatNetwork()
            return self._nat

    def _start_nat(self) -> None:
        """Start making the NAT network in a thread, for RUN steps that are yet to come.

        Its start (~10 ms: a namespace, slirp4netns's readiness) then overlaps the steps
        before the first RUN, which :meth:`_nat_network` waits for. Once a build;
        :meth:`build` waits for it too. Its module is imported here: an import in the
        thread would hold the GIL for long stretches, each one stalling this thread's
        next syscall."""
        from dockyard.runtime.nat import NatNetwork

        with self._lock:
            if self._nat is not None or self._nat_maker is not None:
                return
            self._nat_maker = threading.Thread(
                target=self._make_nat, args=(NatNetwork,), name="dockyard-build-nat", daemon=True
            )
            self._nat_maker.start()  # under the lock: nobody joins it unstarted

    def _make_nat(self, make: Callable[[], NatNetwork]) -> None:
        """:meth:`_start_nat`'s thread: make the network; on failure leave it to the
        first RUN step on it, which tries again and says why."""
        try:
            nat = make()
        except Exception:
            return
        with self._lock:
            self._nat = nat

    def _mount_key(self, d: StageState, instr: ins.Run, mount: Mount, workdir: str) -> list[Any]:
        """What of a RUN mount goes into the cache key: every option as given (ids,
        modes, owners, sizes...), a bind source by content (of ``source`` only in a
        ``from`` stage or image, as ``COPY --from``), caches and secrets by id (never
        their content)."""
        if mount.type == "cache" and (mount.from_ or mount.source):
            raise instr.error(
                "RUN --mount=type=cache with from= or source= (a cache seeded from a stage)"
                " is not supported"
            )
        target = instr.mount_target(mount, workdir) if mount.type != "secret" else mount.target
        key: list[Any] = [dataclasses.asdict(mount), target]
        if mount.type == "bind":
            if mount.from_:
                source_state = self._source_state(d, mount.from_, instr)
                key.append(self._mount_digest(source_state, mount, instr))
            else:
                assert self._context is not None
                key.append(self._context.checksum([_context_path(mount.source)]))
        return key

    def _mount_digest(self, state: ImageState, mount: Mount, instr: ins.Run) -> str:
        """The content digest of a bind mount's ``source`` in a stage or image, memoised
        as :meth:`_from_digest` is."""
        from dockyard.builder.copier.sources import Filters, RootfsTree, build_node, rootfs_digest

        memo_key = step_key(state.identity(), {"mount source": mount.source})
        memo = self.store.root / FROM_DIGESTS_DIR / memo_key
        try:
            return memo.read_text()
        except FileNotFoundError:
            pass
        with self.steps.view(state) as root:
            tree = RootfsTree(root)
            try:
                real = tree.resolve(_context_path(mount.source))
                if real is None:
                    raise instr.error(f"mount source {mount.source!r} not found")
                node = build_node(tree, real, "source", Filters.make(()))
                digest = rootfs_digest(tree, [(real, "source", node)])
            finally:
                tree.close()
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(memo, digest.encode())
        return digest

    def _mount(
        self,
        d: StageState,
        instr: ins.Run,
        mount: Mount,
        workdir: str,
        stack: ExitStack,
        extra_env: dict[str, str],
    ) -> runtime_config.Mount | None:
        from dockyard.runtime import config as runtime_config

        if mount.type == "ssh":
            raise instr.error("RUN --mount=type=ssh is not supported")
        if mount.type == "secret":
            return self._secret_mount(instr, mount, extra_env)
        target = instr.mount_target(mount, workdir)
        if mount.type == "tmpfs":
            return runtime_config.Mount.tmpfs(target, size=mount.size or None)
        if mount.type == "cache":
            directory = self._cache_dir(mount, target, stack)
            return runtime_config.Mount.bind(str(directory), target, readonly=mount.read_only)
        if mount.from_:
            view = self.steps.view(self._source_state(d, mount.from_, instr))
            root = stack.enter_context(ConfinedDir.open(stack.enter_context(view), "stage"))
        else:
            assert self._context is not None
            root = self._context.dir
        source = self._bind_source(root, mount, instr, stack)
        return runtime_config.Mount.bind(str(source), target, readonly=mount.read_only)

    def _bind_source(
        self, root: ConfinedDir, mount: Mount, instr: ins.Instruction, stack: ExitStack
    ) -> Path:
        """A path for the RUN container to bind: a private bind mount of ``mount.source``
        opened inside ``root`` (the context or a stage), made in a scratch dir of the
        builder's own, so no path the build's author controls is ever resolved again.
        Writes to a read-write mount are thrown away, as BuildKit does (an overlay over
        a directory, a copy of a file), never written to the context."""
        from dockyard.runtime import mounts
        from dockyard.runtime.rootfs import overlay_rootfs

        try:
            fd = root.open_fd(mount.source, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            raise instr.error(f"mount source {mount.source!r} not found") from None
        try:
            mode = os.fstat(fd).st_mode
            scratch = stack.enter_context(self.steps.snapshots.scratch())
            source = scratch / "source"
            if stat.S_ISDIR(mode):
                source.mkdir()
            else:
                source.touch(0o600)
            mounts.bind(f"/proc/self/fd/{fd}", source, readonly=True, recursive=False)
        finally:
            os.close(fd)
        if mount.read_only:
            return source
        if stat.S_ISDIR(mode):
            return stack.enter_context(overlay_rootfs([source], scratch / "rw")).merged
        if not stat.S_ISREG(mode):
            raise instr.error(f"mount source {mount.source!r}: rw needs a file or a directory")
        import shutil

        copy = scratch / "copy"
        shutil.copyfile(source, copy)
        copy.chmod(stat.S_IMODE(mode))
        return copy

    def _secret_mount(
        self, instr: ins.Run, mount: Mount, extra_env: dict[str, str]
    ) -> runtime_config.Mount | None:
        from dockyard.runtime import config as runtime_config

        secret_id = mount.id or os.path.basename(mount.target)
        if secret_id not in self.options.secrets:
            if mount.required:
                raise instr.error(
                    f"secret {secret_id}: not found (pass --secret id={secret_id},...)"
                )
            return None
        if mount.env:
            extra_env[mount.env] = self.options.secrets[secret_id].decode()
            if not mount.target:
                return None
        # Staged in the container's private bundle, owned and moded as BuildKit does.
        return runtime_config.Mount.file(
            self.options.secrets[secret_id],
            mount.target or f"/run/secrets/{secret_id}",
            uid=mount.uid or 0,
            gid=mount.gid or 0,
            mode=0o400 if mount.mode is None else mount.mode,
        )

    def _cache_dir(self, mount: Mount, target: str, stack: ExitStack) -> Path:
        """The store directory behind a cache mount: one per id (default: the target).
        Under ``--no-cache`` the build starts it empty (BuildKit's cache mounts are part
        of the cache it ignores): the old one is set aside at its first use."""
        import hashlib

        from dockyard.files.locking import FileLock

        name = hashlib.sha256((mount.id or target).encode()).hexdigest()[:32]
        base = self.store.root / "build" / "cache-mounts"
        directory = base / name
        with self._lock:
            empty_it = self.options.no_cache and name not in self._emptied_cache_mounts
            self._emptied_cache_mounts.add(name)
        if empty_it:
            self._discard(directory)
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, mount.mode if mount.mode is not None else 0o755)
            os.chown(directory, mount.uid or 0, mount.gid or 0)
        if mount.sharing == "locked":
            stack.enter_context(FileLock(base / f"{name}.lock"))
        return directory

    def _discard(self, directory: Path) -> None:
        """Remove ``directory`` (a cache mount's): renamed away first, so that a build
        using it now keeps the old one and a new one can be made at once."""
        import shutil
        import uuid

        aside = self._tmp() / f"discarded-{uuid.uuid4().hex}"
        try:
            os.rename(directory, aside)
        except FileNotFoundError:
            return
        shutil.rmtree(aside, ignore_errors=True)

    def _script_mount(self, script: ins.RunScript, stack: ExitStack) -> runtime_config.Mount:
        import tempfile

        from dockyard.runtime import config as runtime_config

        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=self._tmp())))
        path = directory / "script"
        path.write_text(script.data)
        path.chmod(0o755)
        return runtime_config.Mount.bind(str(path), script.path, readonly=True)

    def _tmp(self) -> Path:
        path = self.store.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _source_state(self, d: StageState, name: str, instr: ins.Instruction) -> ImageState:
        """The stage (by name or index) or image a ``--from`` names."""
        stage = d.plan.source_stage(name)
        if stage is not None:
            return d.done[stage.index].state
        return self._image_state(name, instr)

    def _copy(self, d: StageState, instr: ins.Copy | ins.Add) -> None:
        from dockyard.builder import copier

        state, workdir = d.state, d.state.workdir
        if instr.link:
            _check_link_owner(instr)
        from_ = instr.from_ if isinstance(instr, ins.Copy) else ""
        source_state = self._source_state(d, from_, instr) if from_ else None
        with (
            self._source_root(source_state) as source_root,
            copier.plan_copy(
                instr, None if from_ else self._context, source_root, tmp_dir=self._tmp()
            ) as copy_plan,
        ):
            assert self._context is not None
            payload: dict[str, Any] = {
                "op": instr.keyword,
                "workdir": workdir,
                "plan": copy_plan.key,  # with the content of the context files copied
                "from": self._from_digest(source_state, copy_plan, source_root)
                if source_state
                else None,
            }

            def execute(last: LastRun | None, keep: bool) -> StepLayer:
                if instr.link:
                    return self.steps.detached(
                        state,
                        lambda root: copier.execute_copy(copy_plan, root, workdir=workdir),
                        last=last,
                        in_memory=self._fits_in_memory(copy_plan),
                        keep_if_same=keep,
                    )
                parent = state.identity()
                shape = step_key(
                    "copy shape",
                    {
                        **payload,
                        "plan": {**copy_plan.key, "context": None},
                        "source_date_epoch": self.source_date_epoch,
                    },
                )
                if last is not None and last.copy is not None and not self.options.no_cache:
                    rebuilt = self._rebuild_copy(state, copy_plan, last, parent, shape)
                    if rebuilt is not None:
                        return rebuilt
                placed: list[copier.Placement] = []
                result = self.steps.change(
                    state,
                    lambda fs: placed.append(
                        copier.execute_copy(copy_plan, fs.merged, workdir=workdir)
                    ),
                    last=last,
                    in_memory=self._fits_in_memory(copy_plan),
                    keep_if_same=keep,
                )
                if result.kept or result.packed is None or not placed:
                    return result
                from dockyard.builder import incremental

                note = incremental.record(copy_plan, parent, shape, placed[0])
                return dataclasses.replace(result, copy=note)

            self._layer_step(d, payload, instr.created_by(), execute, detached=instr.link)

    def _rebuild_copy(
        self, state: ImageState, plan: CopyPlan, last: LastRun, parent: str, shape: str
    ) -> StepLayer | None:
        """The COPY's layer made from its last run's (see :mod:`.incremental`), or None
        if that run's record cannot vouch for it."""
        from dockyard.builder import incremental

        assert last.copy is not None and self._context is not None
        found = incremental.changes(last.copy, plan, parent, shape)
        if found is None:
            return None
        lowers = self.steps.lowers(state)
        root = self._context.dir.open_fd("", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            result = self.steps.rebuild(
                state,
                last,
                lambda donor, target: incremental.rebuild(found, plan, root, donor, target, lowers),
            )
        except incremental.Unsure:
            return None
        finally:
            os.close(root)
        if result is None:
            return None
        self.log("  rebuilt from the last run: only changed files written")
        return dataclasses.replace(result, copy=found.record)

    def _fits_in_memory(self, plan) -> bool:
        """May this COPY write into memory (see :meth:`.StepRunner.change`)? Only if it
        copies build-context files and heredocs, whose size is known, and they fit."""
        from dockyard.builder.steps import fits_in_memory

        inline = plan.inline_bytes()
        if inline is None:
            return False
        assert self._context is not None
        return fits_in_memory(self._context.footprint(plan.context_paths) + inline)

    def _from_digest(self, state: ImageState, plan, root: Path | None) -> str:
        """What a ``COPY --from`` reads, by content: a rebuilt stage that yields the same
        files keeps the copy (and what follows) cached, as BuildKit's content keys do.
        Memoised per source state, whose snapshots never change: a warm build reads
        nothing."""
        assert root is not None
        memo = self.store.root / FROM_DIGESTS_DIR / step_key(state.identity(), plan.key)
        try:
            return memo.read_text()
        except FileNotFoundError:
            pass
        digest = plan.from_digest(root)
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(memo, digest.encode())
        return digest

    @contextmanager
    def _source_root(self, state: ImageState | None) -> Iterator[Path | None]:
        if state is None:
            yield None
            return
        with self.steps.view(state) as root:
            yield root

    def _workdir(self, d: StageState, instr: ins.Workdir, workdir: str) -> None:
        """WORKDIR creates the directory (owned by the current USER), as BuildKit does."""
        if workdir == "/":
            d.history(instr.created_by(workdir))
            return
        state, user = d.state, d.state.user

        def execute(last: LastRun | None, keep: bool) -> StepLayer:
            from dockyard.builder.copier import make_dirs

            epoch = self.source_date_epoch
            mtime = epoch * 10**9 if epoch is not None else None
            return self.steps.change(
                state,
                lambda fs: make_dirs(fs.merged, workdir, user, mtime_ns=mtime),
                last=last,
                keep_if_same=keep,
            )

        self._layer_step(
            d,
            {"op": "WORKDIR", "path": workdir, "user": user},
            instr.created_by(workdir),
            execute,
        )


def _source_date_epoch(options: BuildOptions) -> int | None:
    """The build's SOURCE_DATE_EPOCH: the build arg (as BuildKit reads it), else the
    option (the CLI's environment variable); None for neither."""
    value = options.build_args.get("SOURCE_DATE_EPOCH") or None
    if value is None:
        return options.source_date_epoch
    if not (value.isascii() and value.isdigit()):
        raise BuildError(f"invalid SOURCE_DATE_EPOCH {value!r}: seconds since 1970 expected")
    return int(value)


def _frontend_platform(platform: Platform):
    from dockyard.builder.frontend.platforms import Platform as FrontendPlatform

    return FrontendPlatform.parse(str(platform))


def _ignore(
    context: ConfinedDir, dockerfile: ConfinedFile
) -> tuple[IgnoreCheck, Callable[[str], bool]]:
    matcher = IgnoreMatcher.load(context, dockerfile)
    return matcher.excluded, matcher.may_contain


def _dockerfile_in(
    context: ConfinedDir, dockerfile: Path | ConfinedFile | None, stack: ExitStack
) -> ConfinedFile:
    """Where the Dockerfile is read: ``Dockerfile`` (or ``dockerfile``, see
    :func:`_read_dockerfile`) in the context by default; an
    operator's path (``-f``) inside its own directory, which is opened here (BuildKit
    reads it from that directory too)."""
    if dockerfile is None:
        return ConfinedFile(context, "Dockerfile")
    if isinstance(dockerfile, ConfinedFile):
        return dockerfile
    directory = ConfinedDir.open(dockerfile.absolute().parent, "Dockerfile directory")
    return ConfinedFile(stack.enter_context(directory), dockerfile.name)


def _read_dockerfile(dockerfile: ConfinedFile) -> tuple[str, ConfinedFile]:
    """The Dockerfile's text and the file it was read from: a missing ``Dockerfile`` is
    looked for as ``dockerfile`` in the same directory, as BuildKit does. BuildError at
    the line of a byte that is not UTF-8."""
    data = dockerfile.read()
    if data is None and os.path.basename(dockerfile.name) == "Dockerfile":
        lower_case = dockerfile.sibling("dockerfile")
        if (data := lower_case.read()) is not None:
            dockerfile = lower_case
    if data is None:
        raise BuildError("cannot read Dockerfile: no such file", str(dockerfile.path))
    try:
        return data.decode(), dockerfile
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BuildError("Dockerfile is not valid UTF-8", str(dockerfile.path), line) from None


def _context_path(source: str) -> str:
    """A bind mount's context source as a context-relative path (``""``: the root)."""
    return os.path.normpath("/" + source).lstrip("/")


def _check_link_owner(instr: ins.Copy | ins.Add) -> None:
    """``--link`` copies into an empty layer, with no passwd file to look names up in:
    ``--chown`` takes numeric ids or ``root`` only (BuildKit refuses names too)."""
    for part in instr.chown.split(":") if instr.chown else ():
        if part and part != "root" and not part.isdigit():
            raise instr.error(
                f"--chown={instr.chown} with --link: use numeric ids, {part!r} cannot be"
                " looked up in a layer made apart from the image"
            )


def build(store: Store, options: BuildOptions, log: Log | None = None) -> BuildResult:
    """Build ``options`` into ``store``; see :class:`Builder`."""
    return Builder(store, options, log).build()
