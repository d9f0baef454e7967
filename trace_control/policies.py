"""Where controller code runs: in a jail (the default), or in this process (trusted code only).

A controller reaches either place as :class:`ControllerCode`: the text of an exported
file (``load()`` returns the controller), so what runs is exactly what is exported.
Both places take the same requests: ``load`` the code once, ``begin`` each episode (a
fresh controller object), ``act`` on each observation. Whatever goes wrong in the
controller's code (an exception, a time-out, a dead or misbehaving jail) becomes a
:class:`ControllerFailure` whose text is feedback for the optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trace_control.sandbox.host import error_record
from trace_control.sandbox.jail import (
    ControllerRaised,
    Jail,
    JailFault,
    JailLimits,
    JailUnavailable,
    cap_text,
    clean_text,
)
from trace_control.trace import Module
from trace_control.trace.export import export_module
from trace_control.trace.source import annotate


class ControllerFailure(Exception):
    """The controller could not produce an action; ``feedback`` says why (for the optimizer)."""

    def __init__(self, feedback: str) -> None:
        super().__init__(feedback)
        self.feedback = feedback


@dataclass(frozen=True)
class ControllerCode:
    """A controller as the source of a Python file whose ``load()`` returns it.

    ``functions`` holds ``(name, first line, code)`` for trainable functions placed in the
    source verbatim, so errors are reported against the code the optimizer changes.
    """

    source: str
    filename: str = "controller.py"
    functions: tuple[tuple[str, int, str], ...] = ()

    @classmethod
    def from_module(cls, module: Module) -> ControllerCode:
        exported = export_module(module)
        return cls(exported.text, "controller.py", exported.functions)

    @classmethod
    def from_file(cls, path: str | Path) -> ControllerCode:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not UTF-8 text; is it an exported controller?") from None
        return cls(text, path.name)

    def describe(self, record: Mapping[str, Any]) -> str:
        """An error record (type, message, frames) as feedback, with the failing line marked."""
        message = cap_text(clean_text(str(record["message"])))
        text = f"({record['type']}) " + message.replace("\n", "\n  | ")  # its own lines stay visibly its own
        lines = [line for name, line in record["frames"] if name == self.filename]
        if not lines:
            return text
        line = lines[-1]
        for name, first, code in self.functions:
            if first <= line < first + code.count("\n") + 1:
                local = line - first + 1
                return f"{text}\n  at line {local} of {name}:\n{annotate(code, local)}"
        return f"{text}\n  at line {line} of {self.filename}:\n{annotate(self.source, line)}"


class Policy(Protocol):
    """Runs a controller: ``load`` once per code, ``begin`` per episode, ``act`` per step."""

    @property
    def isolation(self) -> str: ...

    def load(self, code: ControllerCode) -> None: ...

    def begin(self) -> None: ...

    def act(self, observation: Mapping[str, Any]) -> Any: ...

    def printed(self) -> str: ...

    def idle(self) -> None: ...

    def close(self) -> None: ...


class JailedPolicy:
    """The controller runs in a :class:`~trace_control.sandbox.jail.Jail`, a fresh one per code version.

    A new code version never shares a process with an earlier one, so nothing a controller
    leaves behind reaches the next. A jail that died or was killed is replaced at the next
    episode. :meth:`idle` launches a spare jail while the caller waits (for the LLM's next
    answer), so a new version rarely waits for a jail to start, and a starting jail never
    competes for the CPU with the episodes being run.
    """

    def __init__(self, limits: JailLimits | None = None) -> None:
        self.limits = limits or JailLimits()
        self.jail = Jail(self.limits)
        self.spare: Jail | None = None
        self.code: ControllerCode | None = None
        self._loaded: ControllerCode | None = None
        self._layout: list[tuple[str, tuple[int, ...]]] | None = None
        self._load_error: str | None = None
        self._started = False  # a jail has started here: a later one that does not is the episode's failure

    @property
    def isolation(self) -> str:
        return self.jail.status.line() if self.jail.status.uid_map else "a bubblewrap jail (not started yet)"

    def start(self) -> None:
        """Start a jail now (to learn its status, or to fail early where none can be built)."""
        if not self.jail.alive():
            self._fresh_jail()
            self._started = True

    def idle(self) -> None:
        """No episode for a while: launch a spare jail for the next code version (if none is waiting)."""
        if self.spare is not None and self.spare.alive():
            return
        if self.spare is not None:
            self.spare.kill()  # one that died waiting leaves nothing behind
        self.spare = Jail(self.limits)
        self.spare.launch()

    def _fresh_jail(self) -> None:
        """Replace the jail with the spare (or a new one) and wait for it."""
        self.jail.kill()
        self.jail, self.spare = self.spare or Jail(self.limits), None
        if not self.jail.alive():
            self.jail.kill()  # a spare that died waiting leaves nothing behind
            self.jail.launch()
        self.jail.wait_ready()

    def load(self, code: ControllerCode) -> None:
        if code != self.code:
            self.code = code
            self.jail.kill()

    def _ready(self) -> None:
        if self.jail.alive() and self._loaded is self.code:
            return
        try:
            self._fresh_jail()
        except JailUnavailable as error:
            if not self._started:
                raise  # no jail ever started here: the command stops with the fix
            raise ControllerFailure(f"a fresh jail for this controller did not start: {error}") from None
        self._started = True
        self._loaded, self._layout, self._load_error = self.code, None, None
        try:
            self.jail.load(self.code.source, self.code.filename)
        except ControllerRaised as raised:
            self._load_error = self.code.describe(raised.record)
        except JailFault as fault:
            self._loaded = None
            raise ControllerFailure(fault.reason) from None

    def begin(self) -> None:
        if self.code is None:
            raise RuntimeError("load() a controller before begin()")
        self._ready()
        if self._load_error:
            raise ControllerFailure(self._load_error)
        try:
            self.jail.begin()
        except ControllerRaised as raised:
            raise ControllerFailure(self.code.describe(raised.record)) from None
        except JailFault as fault:
            raise ControllerFailure(fault.reason) from None

    def act(self, observation: Mapping[str, Any]) -> Any:
        arrays = [np.asarray(value, dtype=float) for value in observation.values()]
        layout = [(name, array.shape) for name, array in zip(observation, arrays)]
        values = np.concatenate(arrays, axis=None) if arrays else np.zeros(0)
        try:
            if layout != self._layout:
                self.jail.send_layout(layout)
                self._layout = layout
            return self.jail.act(values)
        except ControllerRaised as raised:
            raise ControllerFailure(self.code.describe(raised.record)) from None
        except JailFault as fault:
            raise ControllerFailure(fault.reason) from None

    def printed(self) -> str:
        return self.jail.take_output() if self.jail.alive() else ""

    def close(self) -> None:
        self.jail.kill()
        if self.spare is not None:
            self.spare.kill()
            self.spare = None


class InProcessPolicy:
    """The controller runs in this process, unprotected: only for code you trust (``--in-process``)."""

    isolation = "this process, unprotected (--in-process: no jail, no limits)"

    def __init__(self) -> None:
        self.code: ControllerCode | None = None
        self._compiled: Any = None
        self._load_error: str | None = None
        self._policy: Any = None

    def load(self, code: ControllerCode) -> None:
        if code == self.code:
            return
        self.code, self._load_error = code, None
        try:
            self._compiled = compile(code.source, code.filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as error:
            self._load_error = code.describe(error_record(error, code.filename))

    def begin(self) -> None:
        if self._load_error:
            raise ControllerFailure(self._load_error)
        namespace: dict[str, Any] = {"__name__": "controller"}
        try:
            exec(self._compiled, namespace)  # noqa: S102 - the user asked for trusted, in-process code
            if not callable(namespace.get("load")):
                raise NameError("the controller file must define load(), which returns the controller")
            made = namespace["load"]()
        except Exception as error:  # noqa: BLE001 - a broken controller is feedback
            raise ControllerFailure(self.code.describe(error_record(error, self.code.filename))) from None
        self._policy = getattr(made, "controller", None) or made

    def act(self, observation: Mapping[str, Any]) -> Any:
        try:
            return self._policy(observation)
        except Exception as error:  # noqa: BLE001
            raise ControllerFailure(self.code.describe(error_record(error, self.code.filename))) from None

    def printed(self) -> str:
        return ""

    def idle(self) -> None:
        pass

    def close(self) -> None:
        self._policy = None


def make_policy(jailed: bool = True, limits: JailLimits | None = None) -> Policy:
    return JailedPolicy(limits) if jailed else InProcessPolicy()
