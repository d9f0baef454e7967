"""``Module`` / ``model``: objects whose trainable parts are collected, saved and exported."""

from __future__ import annotations

import ast
import inspect
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from trace_control.trace.bundle import FunOp
from trace_control.trace.errors import TraceError
from trace_control.trace.nodes import Node, ParameterNode
from trace_control.trace.source import function_source

SAVE_FORMAT = "trace-control/module-1"


def to_literal(value: Any, where: str = "value") -> Any:
    """``value`` as plain Python data (numpy scalars and arrays become floats and lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [to_literal(item, where) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {str(key): to_literal(item, where) for key, item in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_literal(value.tolist(), where)
    raise TraceError(f"{where} of type {type(value).__name__} is not plain data (numbers, text, lists, dicts)")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _own_classes(cls: type) -> list[type]:
    return [klass for klass in cls.__mro__ if klass not in (Module, object)]


class Module:
    """Base class for traced models: collects trainable code and ParameterNode attributes.

    Keys of :meth:`parameters_dict` are attribute paths: ``"gain"`` for a node
    attribute, ``"act.__code"`` for the code of a trainable method, ``"arm.gain"`` for
    a sub-module's attribute. Calling a module calls its ``forward`` method.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        forward = getattr(self, "forward", None)
        if forward is None:
            raise TraceError(f"{type(self).__name__} has no forward method to call")
        return forward(*args, **kwargs)

    def parameters_dict(self) -> dict[str, ParameterNode]:
        found: dict[str, ParameterNode] = {}
        seen: set[str] = set()
        for klass in reversed(_own_classes(type(self))):
            for attr, value in vars(klass).items():
                if isinstance(value, FunOp) and value.trainable and attr not in seen:
                    seen.add(attr)
                    found[f"{attr}.__code"] = getattr(self, attr).parameter
        for attr, value in vars(self).items():
            if isinstance(value, ParameterNode) and value.trainable:
                found[attr] = value
            elif isinstance(value, Module):
                for key, parameter in value.parameters_dict().items():
                    found[f"{attr}.{key}"] = parameter
        return found

    def parameters(self) -> list[ParameterNode]:
        return list(self.parameters_dict().values())

    # -- persistence ------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters' values as JSON (code as text), atomically."""
        values = {key: to_literal(p._data, key) for key, p in self.parameters_dict().items()}
        document = {"format": SAVE_FORMAT, "class": type(self).__qualname__, "parameters": values}
        atomic_write_text(path, json.dumps(document, indent=2) + "\n")

    def load(self, path: str | os.PathLike) -> None:
        """Set the parameters from a file written by :meth:`save`."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise TraceError(f"cannot read saved parameters from {path}: {error}") from error
        if not isinstance(document, dict) or document.get("format") != SAVE_FORMAT:
            raise TraceError(f"{path} is not a file written by Module.save")
        parameters = self.parameters_dict()
        unknown = sorted(set(document["parameters"]) - set(parameters))
        if unknown:
            raise TraceError(f"{path} has parameters this {type(self).__name__} does not: {', '.join(unknown)}")
        for key, value in document["parameters"].items():
            parameters[key]._set(value)

    def export(self, path: str | os.PathLike | None = None) -> str:
        """Write the model as a plain Python file that runs without trace_control.

        The file defines the class with its current code and constants, the module's
        imports, constants and helper functions it needs, and ``load()`` returning an
        instance. Returns the text (and writes it when ``path`` is given).
        """
        text = export_source(self)
        if path is not None:
            atomic_write_text(path, text)
        return text


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


def export_source(module: Module) -> str:
    cls = type(module)
    methods: list[str] = []
    seen: set[str] = set()
    for klass in _own_classes(cls):
        for attr, value in vars(klass).items():
            if attr in seen or attr.startswith("__") and attr not in ("__call__",):
                continue
            seen.add(attr)
            if isinstance(value, FunOp):
                bound = getattr(module, attr)
                code = bound.parameter._data if bound.trainable else bound.source
                methods.append(code)
            elif inspect.isfunction(value):
                methods.append(function_source(value))
    imports, definitions = [], []
    for klass in _own_classes(cls):
        more_imports, more_definitions = _module_context(klass, methods)
        imports += [line for line in more_imports if line not in imports]
        definitions += [text for text in more_definitions if text not in definitions]
    state: list[str] = []
    for attr, value in vars(module).items():
        if attr.startswith("__bundle_"):
            continue
        if isinstance(value, Module):
            raise TraceError(f"export does not support sub-modules yet ({attr} is a {type(value).__name__})")
        plain = value._data if isinstance(value, Node) else value
        state.append(f"self.{attr} = {to_literal(plain, attr)!r}")
    own_doc = next((klass.__dict__["__doc__"] for klass in _own_classes(cls) if klass.__dict__.get("__doc__")), None)
    doc = inspect.cleandoc(own_doc) if own_doc else f"{cls.__name__}, exported by trace-control."
    body = [f'"""{doc}"""', ""]
    body.append("def __init__(self):")
    body += ["    " + line for line in (state or ["pass"])]
    for method in methods:
        body += [""] + method.rstrip().splitlines()
    if "forward" in seen and "__call__" not in seen:
        body += ["", "def __call__(self, *args, **kwargs):", "    return self.forward(*args, **kwargs)"]
    parts = [f'"""{cls.__name__}, exported by trace-control as plain Python.\n\n'
             f'Use: ``model = load()``, then call its methods."""', "", "from __future__ import annotations", ""]
    parts += imports
    if definitions:
        parts += [""] + ["\n\n".join(definitions)]
    parts += ["", "", f"class {cls.__name__}:", textwrap.indent("\n".join(body), "    "), "", "",
              "def load():", f'    """Return a {cls.__name__} with the exported values."""',
              f"    return {cls.__name__}()", ""]
    text = "\n".join(parts)
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    compile(text, "<export>", "exec")
    return text


def model(cls: type) -> type:
    """Class decorator: make ``cls`` a :class:`Module` (same name, same behaviour)."""
    if issubclass(cls, Module):
        return cls
    return type(cls.__name__, (cls, Module), {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                              "__doc__": cls.__doc__})
