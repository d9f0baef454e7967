"""Export: a Module as a standalone Python file that runs without trace_control."""

from __future__ import annotations

import ast
import inspect
import math
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

from trace_control.trace.bundle import FunOp
from trace_control.trace.errors import TraceError
from trace_control.trace.module import Module, _own_classes, to_literal
from trace_control.trace.nodes import Node
from trace_control.trace.source import function_source


def _names_read(code: str) -> set[str]:
    return {item.id for item in ast.walk(ast.parse(textwrap.dedent(code))) if isinstance(item, ast.Name)}


def _module_context(cls: type, code: list[str]) -> tuple[list[str], list[str]]:
    """The imports, literal constants and plain functions of ``cls``'s module that ``code`` needs.

    Only what the exported code reads (directly or through a needed function) is kept.
    """
    module = sys.modules.get(cls.__module__)
    try:
        source = inspect.getsource(module) if module else ""
    except (OSError, TypeError):
        source = ""
    lines = source.splitlines()
    candidates: list[tuple[str, set[str], str]] = []  # (kind, names defined, text)
    for item in ast.parse(source).body if source else []:
        segment = "\n".join(lines[item.lineno - 1:item.end_lineno])
        if isinstance(item, (ast.Import, ast.ImportFrom)):
            module_name = item.module or "" if isinstance(item, ast.ImportFrom) else item.names[0].name
            if module_name.split(".")[0] in ("trace_control", "__future__"):
                continue
            names = {(alias.asname or alias.name).split(".")[0] for alias in item.names}
            candidates.append(("import", names, segment))
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
            try:
                ast.literal_eval(item.value)
            except (ValueError, TypeError, SyntaxError):
                continue
            targets = item.targets if isinstance(item, ast.Assign) else [item.target]
            names = {target.id for target in targets if isinstance(target, ast.Name)}
            candidates.append(("definition", names, segment))
        elif isinstance(item, ast.FunctionDef) and not item.decorator_list:
            candidates.append(("definition", {item.name}, segment))
    needed = set().union(*(_names_read(text) for text in code)) if code else set()
    chosen: list[int] = []
    grew = True
    while grew:
        grew = False
        for index, (kind, names, segment) in enumerate(candidates):
            if index not in chosen and names & needed:
                chosen.append(index)
                if kind == "definition":
                    needed |= _names_read(segment)
                grew = True
    chosen.sort()
    imports = [candidates[i][2] for i in chosen if candidates[i][0] == "import"]
    definitions = [candidates[i][2] for i in chosen if candidates[i][0] == "definition"]
    return imports, definitions


@dataclass(frozen=True)
class Exported:
    """An exported module: its ``text``, and where each trainable function's code stands in it.

    ``functions`` holds ``(name, first line, code)``: the code is in the text verbatim from
    that 1-based line on, so a line number in the file maps back to a line of the code.
    """

    text: str
    class_name: str
    functions: tuple[tuple[str, int, str], ...]


def literal(value: Any) -> str:
    """``value`` (plain data) as Python source that evaluates back to it (NaN and infinities too)."""
    if isinstance(value, float) and not math.isfinite(value):
        return 'float("nan")' if math.isnan(value) else ('float("inf")' if value > 0 else '-float("inf")')
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(f"{literal(item)}, " for item in value).rstrip(" ") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(key)}: {literal(item)}" for key, item in value.items()) + "}"
    return repr(value)


def export_module(module: Module) -> Exported:
    """The model as a plain Python file (see :meth:`Module.export`).

    Trainable code is placed verbatim at the file's top level and attached to the class,
    so the file holds exactly the code that was checked and run; other methods come from
    the class's source. The text is compiled before it is returned.
    """
    cls = type(module)
    trainable: list[tuple[str, str]] = []
    methods: list[str] = []
    seen: set[str] = set()
    for klass in _own_classes(cls):
        for attr, value in vars(klass).items():
            if attr in seen or attr.startswith("__") and attr not in ("__call__",):
                continue
            seen.add(attr)
            if isinstance(value, FunOp):
                bound = getattr(module, attr)
                if bound.trainable:
                    trainable.append((attr, bound.parameter._data))
                else:
                    methods.append(bound.source)
            elif inspect.isfunction(value):
                methods.append(function_source(value))
    needed = methods + [code for _, code in trainable]
    imports, definitions = [], []
    for klass in _own_classes(cls):
        more_imports, more_definitions = _module_context(klass, needed)
        imports += [line for line in more_imports if line not in imports]
        definitions += [text for text in more_definitions if text not in definitions]
    state: list[str] = []
    for attr, value in vars(module).items():
        if attr.startswith("__bundle_"):
            continue
        if isinstance(value, Module):
            raise TraceError(f"export does not support sub-modules yet ({attr} is a {type(value).__name__})")
        plain = value._data if isinstance(value, Node) else value
        state.append(f"self.{attr} = {literal(to_literal(plain, attr))}")
    own_doc = next((klass.__dict__["__doc__"] for klass in _own_classes(cls) if klass.__dict__.get("__doc__")), None)
    doc = inspect.cleandoc(own_doc) if own_doc else f"{cls.__name__}, exported by trace-control."
    quoted = f'"""{doc}"""' if '"""' not in doc and "\\" not in doc and not doc.endswith('"') else repr(doc)
    body = [quoted, "", "def __init__(self):"] + ["    " + line for line in (state or ["pass"])]
    for method in methods:
        body += [""] + method.rstrip("\n").split("\n")
    if "forward" in seen and "__call__" not in seen:
        body += ["", "def __call__(self, *args, **kwargs):", "    return self.forward(*args, **kwargs)"]
    lines = [f'"""{cls.__name__}, exported by trace-control as plain Python.', "",
             'Use: ``model = load()``, then call its methods."""', "", "from __future__ import annotations", ""]
    lines += imports
    if definitions:
        lines += [""] + "\n\n".join(definitions).split("\n")
    lines += ["", "", f"class {cls.__name__}:"] + ["    " + line if line else "" for line in body]
    functions = []
    for name, code in trainable:
        lines += ["", "", "# The trainable code, exactly as it was checked and run."]
        functions.append((name, len(lines) + 1, code))
        lines += code.rstrip("\n").split("\n")
        lines += ["", "", f"{cls.__name__}.{name} = {name}", f"del {name}"]
    lines += ["", "", "def load():", f'    """Return a {cls.__name__} with the exported values."""',
              f"    return {cls.__name__}()", ""]
    text = "\n".join(lines)
    compile(text, "<export>", "exec", dont_inherit=True)
    return Exported(text, cls.__name__, tuple(functions))


def export_source(module: Module) -> str:
    """The text of :func:`export_module`."""
    return export_module(module).text
