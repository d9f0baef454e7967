"""Export: a Module as a standalone Python file that runs without trace_control."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap

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
