"""Where episodes run: the one evaluation path, behind one :class:`Runner` protocol.

A runner takes a controller (:class:`~trace_control.policies.ControllerCode`) and seeds
and returns one :class:`~trace_control.rollout.Episode` per seed, in seed order. The
simulator always runs in a trusted process; the controller runs in a jail (or, when
asked, in that process). :class:`LocalRunner` uses this process, or N worker processes
on this machine that each hold an environment and a jail; the Ray runner
(:mod:`trace_control.distributed`) spreads the same work over a cluster.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trace_control.evaluation import EvalReport, summarize
from trace_control.policies import ControllerCode, Policy, make_policy
from trace_control.rollout import Episode, run_episode
from trace_control.sandbox.jail import USABLE_CPUS, JailLimits, JailUnavailable

Progress = Callable[[int], None]


class Runner(Protocol):
    """Runs episodes of a controller, one per seed, and says where its code runs."""

    task: str

    @property
    def isolation(self) -> str: ...

    def start(self) -> str: ...

    def run(self, code: ControllerCode, seeds: Sequence[int], keep_steps: bool = False,
            progress: Progress | None = None) -> list[Episode]: ...

    def close(self) -> None: ...


class WorkerError(RuntimeError):
    """A trusted worker process failed (not the controller: the simulator or the worker itself)."""


@dataclass
class Station:
    """One environment and one policy: where episodes run inside a process."""

    task: str
    env_kwargs: dict = field(default_factory=dict)
    jailed: bool = True
    limits: JailLimits = field(default_factory=JailLimits)

    def __post_init__(self) -> None:
        from trace_control import envs

        self.env = envs.make(self.task, **self.env_kwargs)
        self.policy: Policy = make_policy(self.jailed, self.limits)

    def start(self) -> str:
        """Start the policy's jail now (fails early where none can be built); return where code runs."""
        if self.jailed:
            self.policy.start()
        return self.policy.isolation

    def episodes(self, code: ControllerCode, seeds: Sequence[int], keep_steps: bool = False,
                 progress: Progress | None = None, last: bool = True) -> list[Episode]:
        """Run the episodes; after the ``last`` batch of a run, let the policy prepare for the next code
        version while the caller waits."""
        self.policy.load(code)
        episodes = []
        for seed in seeds:
            episodes.append(run_episode(self.env, self.policy, seed=int(seed), keep_steps=keep_steps))
            if progress:
                progress(1)
        if last:
            self.policy.idle()
        return episodes

    def close(self) -> None:
        self.policy.close()
        self.env.close()


def _serve(connection: Any, cpu: int | None, task: str, env_kwargs: dict, jailed: bool, limits: JailLimits) -> None:
    """A trusted worker process: answers ("start",) and ("run", code, seeds, keep_steps, last) requests."""
    from trace_control.envs import ensure_headless_rendering

    ensure_headless_rendering()
    if cpu is not None:  # worker i and its jails on CPU i: two busy workers never share one CPU
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
    station = Station(task, env_kwargs, jailed, limits)
    try:
        while True:
            try:
                request = connection.recv()
            except EOFError:
                return
            try:
                if request[0] == "start":
                    connection.send(("ok", station.start()))
                elif request[0] == "run":
                    code, seeds, keep_steps, last = request[1:]
                    connection.send(("ok", station.episodes(code, seeds, keep_steps, None, last)))
                else:
                    return
            except JailUnavailable as error:
                connection.send(("unavailable", str(error)))
            except Exception:  # noqa: BLE001 - the trusted side's failure goes back whole
                connection.send(("error", traceback.format_exc(limit=8)))
    finally:
        station.close()


class _WorkerProcess:
    """A trusted worker process and its end of the pipe."""

    def __init__(self, index: int, task: str, env_kwargs: dict, jailed: bool, limits: JailLimits) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        cpu = USABLE_CPUS[index % len(USABLE_CPUS)] if jailed and len(USABLE_CPUS) > 1 else None
        self.process = context.Process(target=_serve, args=(child, cpu, task, env_kwargs, jailed, limits),
                                       daemon=True)
        self.process.start()
        child.close()

    def ask(self, *request: Any) -> Any:
        try:
            self.connection.send(request)
            status, value = self.connection.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self.process.exitcode
            raise WorkerError(f"an evaluation worker process died (exit code {code})") from None
        if status == "unavailable":
            raise JailUnavailable(value)
        if status == "error":
            raise WorkerError(f"an evaluation worker failed:\n{value}")
        return value

    def close(self) -> None:
        try:
            self.connection.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.connection.close()


class LocalRunner:
    """Episodes on this machine: in this process (``workers=1``) or spread over worker processes.

    Seeds are handed out one at a time to whichever worker is free, and results come back
    in seed order, so they never depend on the number of workers.
    """

    def __init__(self, task: str, env_kwargs: dict | None = None, workers: int = 1, jailed: bool = True,
                 limits: JailLimits | None = None) -> None:
        self.task = task
        self.env_kwargs = dict(env_kwargs or {})
        self.workers = max(1, int(workers))
        self.jailed = jailed
        self.limits = limits or JailLimits()
        self._station: Station | None = None
        self._processes: list[_WorkerProcess] = []
        self._isolation = ""

    @property
    def isolation(self) -> str:
        return self._isolation or ("a bubblewrap jail (not started yet)" if self.jailed else
                                   "this process, unprotected (--in-process)")

    def start(self) -> str:
        """Build the workers and their jails now; return where controller code runs."""
        if self.workers == 1:
            if self._station is None:
                self._station = Station(self.task, self.env_kwargs, self.jailed, self.limits)
            self._isolation = self._station.start()
        else:
            while len(self._processes) < self.workers:
                self._processes.append(_WorkerProcess(len(self._processes), self.task, self.env_kwargs, self.jailed,
                                                      self.limits))
            self._isolation = [worker.ask("start") for worker in self._processes][0]
        return self._isolation

    def run(self, code: ControllerCode, seeds: Sequence[int], keep_steps: bool = False,
            progress: Progress | None = None) -> list[Episode]:
        seeds = [int(seed) for seed in seeds]
        if not self._isolation:
            self.start()
        if self.workers == 1 or len(seeds) == 1:
            return self._run_here(code, seeds, keep_steps, progress)
        return self._run_spread(code, seeds, keep_steps, progress)

    def _run_here(self, code: ControllerCode, seeds: list[int], keep_steps: bool,
                  progress: Progress | None) -> list[Episode]:
        if self._station is None and self._processes:
            return self._processes[0].ask("run", code, seeds, keep_steps, True)
        return self._station.episodes(code, seeds, keep_steps, progress)

    def _run_spread(self, code: ControllerCode, seeds: list[int], keep_steps: bool,
                    progress: Progress | None) -> list[Episode]:
        pending: queue.SimpleQueue = queue.SimpleQueue()
        for index, seed in enumerate(seeds):
            pending.put((index, seed))
        results: list[Episode | None] = [None] * len(seeds)
        failures: list[BaseException] = []
        lock = threading.Lock()

        def drive(worker: _WorkerProcess) -> None:
            while not failures:
                try:
                    index, seed = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[index] = worker.ask("run", code, [seed], keep_steps, pending.empty())[0]
                except BaseException as error:  # noqa: BLE001 - handed to the caller below
                    failures.append(error)
                    return
                if progress:
                    with lock:
                        progress(1)

        threads = [threading.Thread(target=drive, args=(worker,), daemon=True) for worker in self._processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        return [episode for episode in results if episode is not None]

    def close(self) -> None:
        if self._station is not None:
            self._station.close()
            self._station = None
        for worker in self._processes:
            worker.close()
        self._processes = []


def evaluate(runner: Runner, code: ControllerCode, seeds: Sequence[int],
             progress: Progress | None = None) -> EvalReport:
    """Success rate, return and their spread over ``seeds`` (one episode each)."""
    started = time.perf_counter()
    seeds = [int(seed) for seed in seeds]
    episodes = runner.run(code, seeds, progress=progress)
    return summarize(runner.task, seeds, episodes, time.perf_counter() - started, getattr(runner, "workers", 1))


def make_runner(task: str, env_kwargs: dict | None = None, workers: int = 1, jailed: bool = True,
                limits: JailLimits | None = None) -> LocalRunner:
    return LocalRunner(task, env_kwargs, workers, jailed, limits)
