"""The trainer's side of isolation: sandboxed workers, their limits, and a pool of them.

Whole episodes run in the worker (not single steps), so isolation costs little. The
parent enforces wall-clock limits: if the worker is silent past a step's limit (plus
grace) or an episode runs past its limit, the worker's whole process group is killed
and the episode becomes feedback; the next request starts a fresh worker.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from trace_control.rollout import Episode, StepRecord

# Variables a worker may see; everything else (keys, tokens, proxies, ...) is left out.
ENVIRONMENT_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "PYTHONHASHSEED", "MUJOCO_GL",
                     "PYOPENGL_PLATFORM", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "VIRTUAL_ENV", "TZ")


@dataclass
class Limits:
    """What a worker may use. Times in seconds, sizes in bytes."""

    step_seconds: float = 1.0
    episode_seconds: float = 120.0
    grace_seconds: float = 2.0
    memory_bytes: int = 2 << 30
    cpu_seconds: int = 3600
    file_bytes: int = 1 << 20
    processes: int = 0
    startup_seconds: float = 180.0

    def worker_limits(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "cpu_seconds": self.cpu_seconds, "file_bytes": self.file_bytes,
                "processes": self.processes}


def clean_environment() -> dict[str, str]:
    environment = {key: os.environ[key] for key in ENVIRONMENT_ALLOW if key in os.environ}
    if "PYTHONPATH" in environment:  # the worker starts in another folder: make entries absolute
        environment["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(entry) for entry in environment["PYTHONPATH"].split(os.pathsep) if entry)
    environment.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                       PYTHONDONTWRITEBYTECODE="1", HOME="/nonexistent")
    return environment


class WorkerFailure(RuntimeError):
    """The worker could not be started or set up."""


@dataclass
class SandboxWorker:
    """One sandboxed worker process for one task (restarted after a kill)."""

    task: str
    env_kwargs: dict = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    isolate_network: bool = True
    drop_privileges: bool = True

    def __post_init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.folder: str | None = None
        self.status: dict = {}
        self._buffer = b""
        self.restarts = 0

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="trace-control-worker-")
        os.chmod(self.folder, 0o711)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trace_control.sandbox.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, cwd=self.folder, env=clean_environment(), start_new_session=True)
        self._buffer = b""
        self._send({"op": "setup", "task": self.task, "env_kwargs": self.env_kwargs, "seeds": self.seeds,
                    "limits": self.limits.worker_limits(), "isolate_network": self.isolate_network,
                    "drop_privileges": self.drop_privileges})
        message = self._read(time.monotonic() + self.limits.startup_seconds)
        if message is None or message.get("event") != "ready":
            if message is not None and message.get("event") == "eof":
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            reason = message.get("message") if message and "message" in message else self._death_reason()
            self.kill()
            raise WorkerFailure(f"the sandbox worker for {self.task} did not start: {reason}")
        self.status = message

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.process = None
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def close(self) -> None:
        if self.alive():
            try:
                self._send({"op": "exit"})
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    # -- protocol -------------------------------------------------------------------------
    def _send(self, message: dict) -> None:
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def _read(self, deadline: float) -> dict | None:
        """The next message; ``{"event": "eof"}`` when the worker closed its end; None at the deadline."""
        stream = self.process.stdout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([stream], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(stream.fileno(), 1 << 16)
            if not chunk:
                return {"event": "eof"}
            self._buffer += chunk
            if len(self._buffer) > 64 << 20:
                return {"event": "error", "message": "the worker sent more than 64 MB without a line break"}
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"event": "error", "message": "the worker sent something that is not JSON"}
        return message if isinstance(message, dict) else {"event": "error", "message": "malformed message"}

    def _death_reason(self) -> str:
        if self.process is None:
            return "not running"
        code = self.process.poll()
        if code is None:
            return "no answer in time"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the worker process was killed by {name}"
        return f"the worker process exited with code {code}"

    # -- episodes -------------------------------------------------------------------------
    def run(self, controller: dict, seeds: list[int], keep_steps: bool = False) -> list[Episode]:
        """Run one episode per seed; failures of the worker become episodes with an error."""
        if not self.alive():
            if self.process is not None:
                self.restarts += 1
            self.kill()
            self.start()
        self._send({"op": "run", "controller": controller, "seeds": seeds, "keep_steps": keep_steps,
                    "step_seconds": self.limits.step_seconds})
        episodes: list[Episode] = []
        pending = list(seeds)
        step = 0
        episode_deadline = time.monotonic() + self.limits.episode_seconds
        while True:
            silence_deadline = time.monotonic() + self.limits.step_seconds + self.limits.grace_seconds
            message = self._read(min(episode_deadline, silence_deadline))
            if message is None or message.get("event") == "eof":
                if message is not None:  # the worker closed its end: it died
                    try:
                        self.process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        pass
                    reason = f"{self._death_reason()} during step {max(step, 1)}"
                elif time.monotonic() >= episode_deadline - 1e-3:
                    reason = f"the episode exceeded its {self.limits.episode_seconds:g} s limit"
                else:
                    reason = (f"the controller exceeded {self.limits.step_seconds:g} s at step {max(step, 1)} "
                              "and did not stop (its worker was killed)")
                self.kill()
                self.restarts += 1
                if pending:
                    episodes.append(_failed_episode(pending.pop(0), reason, step))
                episodes += [_failed_episode(seed, "not run: the worker was stopped", 0) for seed in pending]
                return episodes
            event = message.get("event")
            if event == "start":
                step = 0
                episode_deadline = time.monotonic() + self.limits.episode_seconds
            elif event == "alive":
                step = int(message.get("step", step))
            elif event == "episode":
                episodes.append(_episode_from(message["episode"]))
                if pending:
                    pending.pop(0)
            elif event == "done":
                return episodes
            elif event == "error":
                episodes += [_failed_episode(seed, message.get("message", "unknown error"), 0) for seed in pending]
                return episodes


def _failed_episode(seed: int, reason: str, step: int) -> Episode:
    episode = Episode(seed=seed, error=reason, error_kind="controller", length=max(step - 1, 0))
    episode.outcome = f"Success: False\nThe controller failed: {reason}."
    return episode


def _episode_from(record: dict) -> Episode:
    steps = [StepRecord(**step) for step in record.pop("steps", [])]
    printed = record.pop("printed", "")
    episode = Episode(**{**record, "steps": steps})
    if printed:
        episode.outcome += f"\nThe controller printed: {printed[:500]}"
    return episode


class SandboxPool:
    """Several workers for one task; an evaluation spreads its seeds over them."""

    def __init__(self, task: str, env_kwargs: dict | None = None, workers: int = 1, seeds: list[int] | None = None,
                 limits: Limits | None = None) -> None:
        self.workers = [SandboxWorker(task, dict(env_kwargs or {}), list(seeds or []), limits or Limits())
                        for _ in range(max(1, workers))]

    def run(self, controller: dict, seeds: list[int], keep_steps: bool = False) -> list[Episode]:
        if len(self.workers) == 1 or len(seeds) == 1:
            return self.workers[0].run(controller, seeds, keep_steps)
        size = -(-len(seeds) // len(self.workers))
        chunks = [seeds[i:i + size] for i in range(0, len(seeds), size)]
        results: list[list[Episode]] = [[] for _ in chunks]

        def work(index: int) -> None:
            results[index] = self.workers[index].run(controller, chunks[index], keep_steps)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(chunks))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [episode for chunk in results for episode in chunk]

    @property
    def status(self) -> dict:
        return self.workers[0].status

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
