"""The program that runs inside the jail: it turns observations into actions, and nothing else.

This file is not imported by trace_control. The jail (:mod:`trace_control.sandbox.jail`)
copies its text into the sandbox and runs it with the bare interpreter (``python -I -S``),
so it may use only the standard library and numpy. Everything it sends is untrusted once
controller code has run: the trusted side checks every frame.

Frames, both ways: one kind byte, a 4-byte big-endian length, the payload.

    trusted side -> jail                     jail -> trusted side
    C  controller source (JSON)              H  hello (JSON), once, before any controller code
    B  begin an episode (empty)              K  done (empty)
    L  observation layout (JSON)             A  action as float64 values
    O  observation as float64 values (<f8)   J  action as JSON (when it is not a list of numbers)
                                             E  error (JSON: type, message, frames)
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import resource
import signal
import struct
import sys
import traceback

HEADER = struct.Struct(">cI")
MAX_INCOMING = 64 << 20
MAX_MESSAGE_CHARS = 4000
MAX_FRAMES = 40
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


class ControllerTimeout(BaseException):
    """The controller ran past its per-step time (a BaseException: ``except Exception`` cannot catch it)."""


class SockFilterProgram(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_filter(path: str) -> None:
    """Add the seccomp program at ``path`` (compiled by the trusted side) to this process."""
    with open(path, "rb") as stream:
        program = stream.read()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFilterProgram(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "could not load the seccomp filter")


class Channel:
    def __init__(self, incoming: int, outgoing: int) -> None:
        self.incoming = incoming
        self.outgoing = outgoing
        self.buffer = b""

    def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            # ask for what the frame still needs (a read allocates its whole size: a fixed 1 MiB costs
            # a memory mapping per frame, a quarter of a round trip)
            chunk = os.read(self.incoming, min(max(size - len(self.buffer), 4096), 1 << 20))
            if not chunk:
                raise EOFError
            self.buffer += chunk

    def receive(self) -> tuple[bytes, bytes]:
        self._fill(HEADER.size)
        kind, size = HEADER.unpack_from(self.buffer)
        if size > MAX_INCOMING:
            raise EOFError
        self._fill(HEADER.size + size)
        payload = self.buffer[HEADER.size:HEADER.size + size]
        self.buffer = self.buffer[HEADER.size + size:]
        return kind, payload

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        os.write(self.outgoing, HEADER.pack(kind, len(payload)) + payload)

    def send_json(self, kind: bytes, value: object) -> None:
        self.send(kind, json.dumps(value).encode())


def error_record(error: BaseException, filename: str) -> dict:
    """The error as plain data: its type, a capped message and the (file, line) frames in ``filename``."""
    message = error.msg if isinstance(error, SyntaxError) and error.msg else str(error)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + f"... ({len(message) - MAX_MESSAGE_CHARS} more characters)"
    frames = [[frame.f_code.co_filename, line] for frame, line in traceback.walk_tb(error.__traceback__)
              if frame.f_code.co_filename == filename]
    if isinstance(error, SyntaxError) and error.filename == filename and error.lineno:
        frames.append([filename, error.lineno])
    return {"type": type(error).__name__[:100], "message": message, "frames": frames[-MAX_FRAMES:]}


def as_action(value: object) -> tuple[bytes, bytes]:
    """The action as an A frame (numbers) or a J frame (anything else that is plain data)."""
    import numpy

    if isinstance(value, numpy.ndarray) and value.ndim == 1 and value.dtype.kind in "fiu" and value.size <= 4096:
        return b"A", value.astype("<f8").tobytes()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, (list, tuple)) and len(value) <= 4096:
        if all(isinstance(item, float) for item in value):  # the common case (numpy's float64 too), quickly
            return b"A", struct.pack(f"<{len(value)}d", *value)
        items = [item.item() if isinstance(item, numpy.generic) else item for item in value]
        if all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in items):
            try:
                return b"A", numpy.asarray(items, dtype="<f8").tobytes()
            except OverflowError:
                pass
    try:
        text = json.dumps(value, default=lambda item: f"<{type(item).__name__}>")
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(f"<{type(value).__name__}>")
    return b"J", text.encode()[:65536]


class Host:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.code = None
        self.filename = "controller.py"
        self.step_seconds = 1.0
        self.policy = None
        self.layout: list[tuple[str, tuple[int, ...], int]] = []
        self._timer = _Timer(self.step_seconds)

    def controller(self, payload: bytes) -> None:
        request = json.loads(payload)
        self.filename = str(request["filename"])
        self.step_seconds = float(request["step_seconds"])
        try:
            self.code = compile(request["source"], self.filename, "exec", dont_inherit=True)
        except Exception as error:  # noqa: BLE001 - a broken controller is feedback
            self.channel.send_json(b"E", error_record(error, self.filename))
            return
        self.channel.send(b"K")

    def begin(self) -> None:
        """A fresh controller object per episode: the source runs again in a new namespace."""
        namespace = {"__name__": "controller", "__builtins__": __builtins__}
        try:
            with self.timer():
                exec(self.code, namespace)  # noqa: S102 - running the controller is this program's job
                made = namespace["load"]() if callable(namespace.get("load")) else None
                if made is None:
                    raise NameError("the controller file must define load(), which returns the controller")
            policy = getattr(made, "controller", None) or made
            if not callable(policy):
                raise TypeError(f"load() returned a {type(made).__name__}, which cannot be called with an observation")
        except BaseException as error:  # noqa: BLE001 - even SystemExit from the controller is feedback
            self.channel.send_json(b"E", error_record(error, self.filename))
            return
        self.policy = policy
        self.channel.send(b"K")

    def set_layout(self, payload: bytes) -> None:
        layout = []
        for name, shape in json.loads(payload):
            size = math.prod(shape) if shape else 1
            layout.append((str(name), tuple(int(n) for n in shape), size))
        self.layout = layout

    def act(self, payload: bytes) -> None:
        import numpy

        values = numpy.frombuffer(payload, dtype="<f8").copy()
        observation, offset = {}, 0
        for name, shape, size in self.layout:
            observation[name] = values[offset:offset + size].reshape(shape)
            offset += size
        try:
            with self.timer():
                action = self.policy(observation)
        except BaseException as error:  # noqa: BLE001
            self.channel.send_json(b"E", error_record(error, self.filename))
            return
        self.channel.send(*as_action(action))

    def timer(self) -> _Timer:
        if self._timer.seconds != self.step_seconds:
            self._timer = _Timer(self.step_seconds)
        return self._timer

    def serve(self) -> None:
        handlers = {b"C": self.controller, b"L": self.set_layout, b"O": self.act}
        while True:
            try:
                kind, payload = self.channel.receive()
            except EOFError:
                return
            if kind == b"B":
                self.begin()
            else:
                handlers[kind](payload)


class _Timer:
    """Raise ControllerTimeout in the controller's code after ``seconds`` (the trusted side kills later)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, self.seconds)  # a controller that takes SIGALRM over is killed later

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _expire(signum: int, frame: object) -> None:
    raise ControllerTimeout("the controller exceeded its time limit")


def main() -> None:
    settings = json.loads(sys.argv[1])
    for limit, value in ((resource.RLIMIT_AS, settings["memory_bytes"]), (resource.RLIMIT_CPU, settings["cpu_seconds"]),
                         (resource.RLIMIT_FSIZE, settings["file_bytes"]), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NOFILE, 32), (resource.RLIMIT_SIGPENDING, 64),
                         (resource.RLIMIT_MSGQUEUE, 0), (resource.RLIMIT_MEMLOCK, 0)):
        resource.setrlimit(limit, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails instead of killing the host
    sys.path.insert(0, settings["site"])
    # what controllers may import, loaded before any controller code runs
    import cmath  # noqa: F401
    import collections  # noqa: F401
    import dataclasses  # noqa: F401
    import functools  # noqa: F401
    import itertools  # noqa: F401
    import operator  # noqa: F401
    import random  # noqa: F401
    import statistics  # noqa: F401
    import typing  # noqa: F401

    import numpy

    load_filter(settings["no_exec_filter"])
    signal.signal(signal.SIGALRM, _expire)
    channel = Channel(0, settings["reply_fd"])
    channel.send_json(b"H", {"python": sys.version.split()[0], "numpy": numpy.__version__})
    Host(channel).serve()


if __name__ == "__main__":
    main()
