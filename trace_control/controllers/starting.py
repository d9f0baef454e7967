"""Starting controllers that return zeros, written from each task's interface.

The Meta-World and locomotion tasks share one starting point: a controller that does
nothing (the paper's ``return [0, 0, 0, 0]``), whose docstring tells the observation
keys and the action of its task. The optimizer rewrites the function's source text, so
the class of a task is made on first use (``starting:PickPlaceController``) from a
source template with that task's docstring, registered with ``linecache`` so that
``inspect.getsource`` (and so the trainable code) shows it.
"""

from __future__ import annotations

import linecache
import textwrap

from trace_control.controllers.base import Controller
from trace_control.trace import bundle

_TEMPLATE = '''def controller(self, obs):
    """{doc}
    """
    return {zeros}
'''


def class_name(task: str) -> str:
    """``pick-place`` -> ``PickPlaceController``."""
    return "".join(part.capitalize() for part in task.replace("_", "-").split("-")) + "Controller"


def controller_source(task: str) -> str:
    """The source of ``task``'s starting ``controller`` function: its docstring, then zeros."""
    from trace_control import envs

    interface = envs.interface(task)
    size = interface.action_size
    doc = f"Map an observation to an action for {task}.\n\n{interface.describe()}"
    body = textwrap.indent(doc, "    ").lstrip()
    zeros = "[0.0, 0.0, 0.0, 0.0]" if size == 4 else f"[0.0] * {size}"
    return _TEMPLATE.format(doc=body, zeros=zeros)


def starting_class(task: str) -> type[Controller]:
    """The starting controller class of ``task`` (one class per task, made once)."""
    name = class_name(task)
    existing = globals().get(name)
    if existing is not None:
        return existing
    source = controller_source(task)
    filename = f"<starting controller {task}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict = {"__name__": __name__}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own template
    cls = type(name, (Controller,), {
        "__doc__": f"Controls the robot of {task}; starts by doing nothing.", "__module__": __name__,
        "__qualname__": name, "task": task, "controller": bundle(trainable=True)(namespace["controller"])})
    globals()[name] = cls
    return cls


def __getattr__(name: str) -> type[Controller]:
    """``starting.ReachController`` etc.: the class of the task the name spells."""
    from trace_control import envs

    for task in envs.TASKS:
        if class_name(task) == name:
            return starting_class(task)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
