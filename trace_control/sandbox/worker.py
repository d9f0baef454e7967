"""The sandboxed worker: runs controller episodes for a parent trainer, and nothing else.

Started by :class:`trace_control.sandbox.runner.SandboxWorker` as
``python -m trace_control.sandbox.worker`` in a fresh temporary folder, with an
environment stripped of secrets and its own process group. It reads one JSON request
per line on stdin and answers JSON lines on a private copy of stdout (anything the
controller prints goes to a capture file instead). Before taking requests it builds
its environment, then cuts itself off: no network (a new network namespace where the
OS allows it), resource limits (memory, CPU time, open files, file size, processes),
and, when started as root, the unprivileged ``nobody`` user.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import time
from dataclasses import asdict
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
NOBODY = 65534


class ControllerTimeout(BaseException):
    """The controller ran past its per-step time limit (a BaseException: ``except Exception`` in
    the controller's code cannot swallow it)."""


def isolate_network() -> str:
    """Enter a new, empty network namespace; say what happened."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWNET | CLONE_NEWUSER
        if libc.unshare(flags) != 0:
            return f"shared (unshare failed: {os.strerror(ctypes.get_errno())})"
        return "isolated (new network namespace)"
    except (OSError, AttributeError) as error:
        return f"shared (unshare unavailable: {error})"


CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18


def isolate_filesystem(folder: str) -> str:
    """In a new mount namespace, make every mount read-only except ``folder``; say what happened."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
        if libc.unshare(CLONE_NEWNS) != 0:
            return f"writable (unshare failed: {os.strerror(ctypes.get_errno())})"
        if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            return f"writable (mount failed: {os.strerror(ctypes.get_errno())})"
        target = os.fsencode(folder)
        if libc.mount(target, target, None, MS_BIND, None) != 0:
            return f"writable (bind mount failed: {os.strerror(ctypes.get_errno())})"
        with open("/proc/self/mountinfo") as stream:
            points = [line.split()[4] for line in stream]
        for point in points:
            if point != folder:
                libc.mount(None, os.fsencode(point), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        probe = os.path.join(os.path.dirname(folder.rstrip("/")), f".trace-control-probe-{os.getpid()}")
        try:
            with open(probe, "w"):
                pass
        except OSError:
            return "read-only except the worker folder"
        os.unlink(probe)
        return "writable (remounting read-only did not take effect)"
    except (OSError, AttributeError) as error:
        return f"writable (mount namespaces unavailable: {error})"


def _world_readable(path: str) -> bool:
    current = os.path.abspath(path)
    while True:
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return False
        if not mode & 0o005:
            return False
        parent = os.path.dirname(current)
        if parent == current:
            return True
        current = parent


def drop_privileges() -> str:
    """As root, become ``nobody`` (when the installed code stays readable); say what happened."""
    if os.geteuid() != 0:
        return "unprivileged user"
    from trace_control import envs

    needed = [sys.prefix, os.path.dirname(os.__file__), os.path.dirname(os.path.dirname(envs.__file__))]
    unreadable = [path for path in needed if not _world_readable(path)]
    if unreadable:
        return f"kept root (not readable by others: {unreadable[0]})"
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return "dropped to nobody"


def apply_limits(limits: dict) -> None:
    soft_as = limits.get("memory_bytes")
    if soft_as:
        current = _virtual_memory()
        resource.setrlimit(resource.RLIMIT_AS, (current + soft_as, current + soft_as))
    cpu = limits.get("cpu_seconds")
    if cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.get("file_bytes", 1 << 20),) * 2)
    open_files = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 32
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files + 16, open_files + 16))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.get("processes", 0),) * 2)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes fail instead of killing us


def _virtual_memory() -> int:
    try:
        with open("/proc/self/statm") as stream:
            return int(stream.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class Worker:
    def __init__(self, out: Any, capture_path: str) -> None:
        self.out = out
        self.capture_path = capture_path
        self.env = None
        self.task = None
        self._last_message = 0.0

    def send(self, message: dict) -> None:
        self.out.write(json.dumps(message, default=str) + "\n")
        self.out.flush()
        self._last_message = time.monotonic()

    def setup(self, request: dict) -> dict:
        from trace_control import envs
        from trace_control.envs.metaworld_tasks import MetaWorldTextEnv, placement

        self.task = request["task"]
        self.env = envs.make(self.task, **request.get("env_kwargs", {}))
        if isinstance(self.env, MetaWorldTextEnv):
            for seed in request.get("seeds", []):  # built now: later the files may be out of reach
                placement(self.env.spec_task.env_name, int(seed))
        network = isolate_network() if request.get("isolate_network", True) else "shared (not asked to isolate)"
        files = isolate_filesystem(os.getcwd()) if request.get("isolate_files", True) else "writable (not asked)"
        privileges = drop_privileges() if request.get("drop_privileges", True) else "kept (not asked to drop)"
        apply_limits(request.get("limits", {}))
        return {"event": "ready", "network": network, "files": files, "privileges": privileges,
                "pid": os.getpid()}

    def build(self, spec: dict) -> tuple:
        if spec["kind"] == "source":
            namespace: dict[str, Any] = {"__name__": "exported_controller"}
            exec(compile(spec["source"], "<exported controller>", "exec"), namespace)  # noqa: S102
            controller = namespace["load"]()
            return getattr(controller, "controller", None) or controller, None
        from trace_control.controllers import import_class

        controller = import_class(spec["reference"])()
        parameters = controller.parameters_dict()
        for key, value in spec["parameters"].items():
            parameters[key]._set(value)
        op = controller.controller
        return op.plain_function(), op.describe

    def run(self, request: dict) -> None:
        from trace_control.rollout import run_episode

        try:
            policy, describe = self.build(request["controller"])
        except Exception as error:  # the controller could not even be built: that is feedback too
            self.send({"event": "error", "message": f"({type(error).__name__}) {error}"})
            return
        step_limit = float(request.get("step_seconds", 1.0))
        for seed in request["seeds"]:
            counter = {"step": 0}
            self.send({"event": "start", "seed": seed})

            def timed(observation: dict, counter: dict = counter) -> Any:
                counter["step"] += 1
                if time.monotonic() - self._last_message > 0.1:
                    self.send({"event": "alive", "step": counter["step"]})
                signal.setitimer(signal.ITIMER_REAL, step_limit)
                try:
                    return policy(observation)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)

            def on_alarm(signum: int, frame: Any, counter: dict = counter) -> None:
                raise ControllerTimeout(f"the controller exceeded {step_limit:g} s at step {counter['step']}")

            signal.signal(signal.SIGALRM, on_alarm)
            episode = run_episode(self.env, timed, seed=seed, keep_steps=request.get("keep_steps", False),
                                  describe_error=describe)
            record = asdict(episode)
            printed = self._printed()
            if printed:
                record["printed"] = printed
            self.send({"event": "episode", "episode": record})
        self.send({"event": "done"})

    def _printed(self, limit: int = 2000) -> str:
        try:
            size = os.path.getsize(self.capture_path)
            if not size:
                return ""
            with open(self.capture_path, "rb") as stream:
                text = stream.read(limit).decode("utf-8", "replace")
            os.truncate(self.capture_path, 0)
            return text
        except OSError:
            return ""


def main() -> None:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    capture_path = os.path.abspath("printed.txt")
    capture = os.open(capture_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(capture, 1)
    os.dup2(capture, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    # everything a controller may import, loaded before the worker is cut off
    import collections  # noqa: F401
    import itertools  # noqa: F401
    import math  # noqa: F401
    import random  # noqa: F401
    import statistics  # noqa: F401

    import numpy  # noqa: F401

    import trace_control.rollout  # noqa: F401
    from trace_control import (
        controllers,  # noqa: F401
        envs,  # noqa: F401
    )

    worker = Worker(out, capture_path)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "setup":
            try:
                worker.send(worker.setup(request))
            except Exception as error:
                worker.send({"event": "error", "message": f"the worker could not start: ({type(error).__name__}) "
                                                          f"{error}"})
                return
        elif request["op"] == "run":
            worker.run(request)
        elif request["op"] == "exit":
            return


if __name__ == "__main__":
    main()
