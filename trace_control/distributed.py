"""Ray: an experiment's grid and large evaluations spread over a cluster, results brought home.

Imported only when a command is given ``--ray`` (Ray is the optional extra
``trace-control[ray]``). Every node needs the same trace-control install and bubblewrap.

What runs where:

- The caller (the process that ran the command) plans the grid and writes every file
  of the experiment folder. On its node (the head node, for ``ray://``) it keeps two
  small actors that use no CPU: the shared LLM budget
  (:class:`~trace_control.llm.limiter.SharedBudget`) and a
  :class:`~trace_control.snapshots.RunStore` holding the newest checkpoint of each run
  under way.
- Each grid cell is one Ray task (``cpus_per_run`` CPUs). It builds its own
  environments and jails, trains in a run folder on its node's disk (or in the shared
  ``storage`` folder), sends the changed files to the run store at every checkpoint,
  and returns the finished run folder through the object store. The caller copies
  checkpoints into the experiment folder as they arrive, so stopping the command and
  running it again resumes every run from its last checkpoint.
- When a node dies, Ray runs the task again elsewhere (``RETRIES`` times); the new
  attempt resumes from the furthest checkpoint it can find: the run store's, the shared
  storage's or the experiment folder's.
- :class:`RayRunner` runs the episodes of an evaluation as tasks over chunks of
  placements, each building its own environment and jail.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from trace_control.experiment import Cell, GridProgress, LLMSettings, RayOptions, run_cell
from trace_control.llm.limiter import BudgetHandle, Limits, SharedBudget
from trace_control.policies import ControllerCode
from trace_control.rollout import Episode
from trace_control.runners import Progress, Station
from trace_control.runs import STATE, RunFolder
from trace_control.sandbox.jail import JailLimits
from trace_control.snapshots import RunStore, changed_files, checkpoint_iteration, write_files

RETRIES = 3
PULL_SECONDS = 2.0
CONNECT_SECONDS = 5.0
CHUNKS_PER_WORKER = 2


class ClusterUnavailable(RuntimeError):
    """No Ray cluster could be reached or started; the message says why."""


def connect(address: str | None) -> str:
    """Join the cluster at ``address`` (None: start a local Ray instance) unless already joined;
    return a line saying what the cluster has and where its dashboard is, if it runs one."""
    where = address or "a local instance"
    if address and address not in ("auto", "local"):
        _check_reachable(address, where)
    try:
        context = ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        resources = ray.cluster_resources()
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterUnavailable(f"cannot reach a Ray cluster at {where}: {str(error).splitlines()[0]}") from None
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    line = f"Ray: {nodes} node(s), {resources.get('CPU', 0):g} CPUs"
    dashboard = getattr(context, "dashboard_url", None)
    return line + (f"; dashboard: http://{dashboard}" if dashboard else "")


def _check_reachable(address: str, where: str) -> None:
    """Fail at once, rather than after Ray's long retries, when nothing listens at HOST:PORT."""
    host, _, port = address.split("://")[-1].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_SECONDS).close()
    except ValueError:
        raise ClusterUnavailable(f"cannot read the Ray address {where}; write auto, HOST:PORT or "
                                 "ray://HOST:PORT") from None
    except OSError as error:
        raise ClusterUnavailable(f"cannot reach a Ray cluster at {where}: {error.strerror or error}") from None


# -- runs under way -------------------------------------------------------------------------------
class MirroredRunFolder(RunFolder):
    """A run folder that sends its changed files to the run store at every checkpoint."""

    def __init__(self, path: Path, store: Any, name: str) -> None:
        super().__init__(path)
        self.store, self.name = store, name
        self.seen: dict[str, tuple[int, int]] = {}

    def write_json(self, name: str, data: Any) -> None:
        super().write_json(name, data)
        if name == STATE:
            ray.get(self.store.put.remote(self.name, changed_files(self.path, self.seen)))


class RayBudget(BudgetHandle):
    """The shared budget, served by a Ray actor, for clients on any node."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def _call(self, method: str, *args: Any) -> Any:
        return ray.get(getattr(self.actor, method).remote(*args))


# -- the grid -----------------------------------------------------------------------------------------
@ray.remote(max_retries=RETRIES)
def _train_cell(cell: Cell, caller_copy: dict[str, bytes], llm: LLMSettings, budget: Any, store: Any,
                storage: str | None) -> dict:
    """One grid cell on whichever node Ray chose; its results and every file of its finished run folder."""
    from trace_control.envs import ensure_headless_rendering

    ensure_headless_rendering()
    scratch = None if storage else Path(tempfile.mkdtemp(prefix="trace-control-"))
    folder = (Path(storage) if storage else scratch) / cell.name
    try:
        here = changed_files(folder, {}) if folder.is_dir() else {}
        copies = [here, ray.get(store.files.remote(cell.name)), caller_copy]
        furthest = max(copies, key=checkpoint_iteration)
        if furthest is not here:
            shutil.rmtree(folder, ignore_errors=True)
            write_files(folder, furthest)
        resumed = checkpoint_iteration(furthest)
        run = MirroredRunFolder(folder, store, cell.name)
        results = run_cell(cell, run, llm, RayBudget(budget), echo=lambda _: None, progress=False)
        return {"results": results, "files": changed_files(folder, {}), "resumed_after": resumed,
                "node": ray.util.get_node_ip_address()}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def run_grid(cells: list[Cell], out: Path, llm: LLMSettings, limits: Limits, spent: tuple[float, int],
             options: RayOptions, watch: GridProgress, results: dict) -> dict[tuple, str]:
    """Run ``cells`` as Ray tasks, writing their folders into ``out/runs`` and their results into ``results``;
    return why each failed run failed (by cell key). Assumes :func:`connect` was called."""
    beside_caller = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    budget = ray.remote(SharedBudget).options(num_cpus=0, scheduling_strategy=beside_caller).remote(limits, *spent)
    store = ray.remote(RunStore).options(num_cpus=0, scheduling_strategy=beside_caller).remote()
    storage = str(Path(options.storage).resolve() / out.resolve().name / "runs") if options.storage else None
    under_way = {}
    for cell in cells:
        caller_copy = changed_files(out / "runs" / cell.name, {}) if (out / "runs" / cell.name).is_dir() else {}
        task = _train_cell.options(num_cpus=options.cpus_per_run, name=f"train {cell.name}")
        under_way[task.remote(cell, caller_copy, llm, budget, store, storage)] = cell
    failures: dict[tuple, str] = {}
    version = 0
    try:
        while under_way:
            done, _ = ray.wait(list(under_way), num_returns=1, timeout=PULL_SECONDS)
            version = _bring_home(store, version, out)
            for reference in done:
                cell = under_way.pop(reference)
                try:
                    outcome = ray.get(reference)
                except ray.exceptions.RayError as error:
                    failures[cell.key] = _reason(error)
                    watch.failed(cell, failures[cell.key])
                    continue
                write_files(out / "runs" / cell.name, outcome["files"])
                store.forget.remote(cell.name)
                results[cell.key] = outcome["results"]
                resumed = outcome["resumed_after"]
                note = f" (resumed after iteration {resumed})" if resumed >= 0 else ""
                watch.ran(cell, outcome["results"], RayBudget(budget).totals(), f"{note} on {outcome['node']}")
    except KeyboardInterrupt:
        for reference in under_way:
            ray.cancel(reference, force=True)
        _bring_home(store, version, out)
        raise
    return failures


def _bring_home(store: Any, since: int, out: Path) -> int:
    """Copy the checkpoints that arrived since version ``since`` into the experiment folder; the new version."""
    version, changes = ray.get(store.changes.remote(since))
    for name, files in changes.items():
        write_files(out / "runs" / name, files)
    return version


def _reason(error: BaseException) -> str:
    """One line for a failed task: the exception inside it, or what happened to its worker."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    return str(error).strip().splitlines()[0]


# -- evaluation -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _station(task: str, env_kwargs: dict, jailed: bool, limits: JailLimits) -> Iterator[Station]:
    """A fresh environment and jail on this node, closed afterwards.

    The jail pins this thread to the CPU it runs on (see ``share_a_cpu``); a Ray worker process
    serves many tasks, so the pin is undone afterwards and the next task may run anywhere.
    """
    from trace_control.envs import ensure_headless_rendering

    ensure_headless_rendering()
    cpus = os.sched_getaffinity(0)
    station = Station(task, env_kwargs, jailed, limits)
    try:
        yield station
    finally:
        station.close()
        os.sched_setaffinity(0, cpus)


@ray.remote(max_retries=RETRIES)
def _where_code_runs(task: str, env_kwargs: dict, jailed: bool, limits: JailLimits) -> str:
    with _station(task, env_kwargs, jailed, limits) as station:
        return station.start()


@ray.remote(max_retries=RETRIES)
def _episodes(task: str, env_kwargs: dict, jailed: bool, limits: JailLimits, code: ControllerCode,
              seeds: list[int], keep_steps: bool) -> list[Episode]:
    with _station(task, env_kwargs, jailed, limits) as station:
        return station.episodes(code, seeds, keep_steps, last=False)  # the station closes: no spare jail


class RayRunner:
    """Episodes spread over a Ray cluster (the :class:`~trace_control.runners.Runner` protocol).

    A call's seeds are cut into about ``CHUNKS_PER_WORKER`` chunks per worker (a worker is
    ``cpus_per_task`` of the cluster's CPUs); each chunk is a task that builds its own
    environment and jail. Results come back in seed order, the same as on one machine.
    Assumes :func:`connect` was called.
    """

    def __init__(self, task: str, env_kwargs: dict | None = None, jailed: bool = True,
                 limits: JailLimits | None = None, cpus_per_task: float = 1.0) -> None:
        self.task = task
        self.env_kwargs = dict(env_kwargs or {})
        self.jailed = jailed
        self.limits = limits or JailLimits()
        self.cpus_per_task = cpus_per_task
        self.workers = 1
        self._isolation = ""

    @property
    def isolation(self) -> str:
        return self._isolation or "a bubblewrap jail on each Ray node (not started yet)"

    def start(self) -> str:
        """Build an environment and a jail on one node (fails early where none can be built)."""
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_task))
        probe = _where_code_runs.options(num_cpus=self.cpus_per_task)
        self._isolation = ray.get(probe.remote(self.task, self.env_kwargs, self.jailed, self.limits))
        return self._isolation

    def run(self, code: ControllerCode, seeds: Sequence[int], keep_steps: bool = False,
            progress: Progress | None = None) -> list[Episode]:
        seeds = [int(seed) for seed in seeds]
        size = max(1, math.ceil(len(seeds) / (self.workers * CHUNKS_PER_WORKER)))
        chunks = [seeds[start:start + size] for start in range(0, len(seeds), size)]
        shared_code = ray.put(code)
        remote = _episodes.options(num_cpus=self.cpus_per_task)
        order = {remote.remote(self.task, self.env_kwargs, self.jailed, self.limits, shared_code, chunk, keep_steps):
                 index for index, chunk in enumerate(chunks)}
        episodes: list[list[Episode]] = [[] for _ in chunks]
        waiting = list(order)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            index = order[done[0]]
            episodes[index] = ray.get(done[0])
            if progress:
                progress(len(chunks[index]))
        return [episode for chunk in episodes for episode in chunk]

    def close(self) -> None:
        """Nothing to release: each task closed its own environment and jail."""

