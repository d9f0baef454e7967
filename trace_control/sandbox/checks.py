"""A static check of controller code: fast advice for the LLM, not a wall.

The code must parse, define the expected function (one top-level ``def``, plus
imports), import only allowed modules, and avoid the names and attributes that reach
outside a controller's job: files, the interpreter's internals, processes, sockets. A
rejection is feedback ("imports os: not allowed") the LLM reads next time. Python's
reflection has more doors than any such list can name; what holds is the jail
(:mod:`trace_control.sandbox.jail`), which runs whatever passes (and, for exported files,
whatever the user asks for) with nothing to reach.
"""

from __future__ import annotations

import ast

ALLOWED_IMPORTS = frozenset({"math", "cmath", "numpy", "random", "statistics", "itertools", "functools",
                             "operator", "collections", "dataclasses", "typing", "__future__"})
FORBIDDEN_NAMES = frozenset({
    "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr", "setattr",
    "delattr", "input", "breakpoint", "memoryview", "help", "exit", "quit", "__builtins__", "__loader__",
    "__spec__",
})
# numpy's doors to files and foreign code, reflection's doors to frames and code, modules re-exported
FORBIDDEN_ATTRIBUTES = frozenset({
    "save", "savez", "savez_compressed", "savetxt", "load", "loadtxt", "genfromtxt", "fromfile", "tofile",
    "fromregex", "memmap", "ctypeslib", "ctypes", "lib", "DataSource", "f2py", "testing", "distutils",
    "system", "popen", "attrgetter", "methodcaller", "tb_frame", "tb_next", "gi_frame", "gi_code", "cr_frame",
    "ag_frame", "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "format_map",
    "os", "sys", "builtins", "importlib", "subprocess", "inspect", "gc", "io", "pathlib", "shutil", "socket",
    "signal", "pickle", "marshal", "types", "threading", "resource",
})
MAX_CODE_CHARS = 20_000


def check_controller_code(code: str, fn_name: str) -> list[str]:
    """Problems that stop ``code`` from running as the function ``fn_name`` (empty: it may run)."""
    if not isinstance(code, str):
        return [f"the code must be text, got {type(code).__name__}"]
    if len(code) > MAX_CODE_CHARS:
        return [f"the code is {len(code):,} characters long; the limit is {MAX_CODE_CHARS:,}"]
    tree, problems = _parsed(code, "code")
    if tree is None:
        return problems
    definitions = [item for item in tree.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))]
    others = [item for item in tree.body if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                  ast.Import, ast.ImportFrom))]
    if [d.name for d in definitions] != [fn_name]:
        names = ", ".join(d.name for d in definitions) or "no function"
        problems.append(f"the code must define exactly one function, {fn_name} (it defines {names})")
    if others:
        problems.append(f"the code may only hold imports and the function {fn_name}, not module-level "
                        f"statements (line {others[0].lineno})")
    problems += _reach(tree)
    return _unique(problems)


def _import_problem(module: str, line: int) -> str:
    allowed = ", ".join(sorted(ALLOWED_IMPORTS - {"__future__"}))
    return f"the controller tried to import {module} (line {line}), which is not allowed; allowed: {allowed}"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def check_file(text: str) -> list[str]:
    """What an exported controller file reaches for (imports, names, attributes); empty: nothing flagged."""
    tree, problems = _parsed(text, "file")
    return problems if tree is None else _unique(_reach(tree))


def _parsed(text: str, what: str) -> tuple[ast.AST | None, list[str]]:
    """(the syntax tree, []) or (None, [why ``text`` does not parse])."""
    try:
        return ast.parse(text), []
    except SyntaxError as error:
        return None, [f"the {what} has a syntax error at line {error.lineno}: {error.msg}"]
    except (ValueError, MemoryError, RecursionError) as error:
        return None, [f"the {what} cannot be parsed: {error}"]


def _reach(tree: ast.AST) -> list[str]:
    """Imports outside the allowed modules, and names / attributes outside a controller's job."""
    problems: list[str] = []
    for item in ast.walk(tree):
        if isinstance(item, ast.Import):
            for alias in item.names:
                root = alias.name.split(".")[0]
                if root not in ALLOWED_IMPORTS:
                    problems.append(_import_problem(alias.name, item.lineno))
        elif isinstance(item, ast.ImportFrom):
            root = (item.module or "").split(".")[0]
            if item.level or root not in ALLOWED_IMPORTS:
                problems.append(_import_problem(item.module or ".", item.lineno))
            for alias in item.names:
                if alias.name.startswith("_") and root != "__future__" or alias.name in FORBIDDEN_ATTRIBUTES:
                    problems.append(f"the controller imports {alias.name} from {item.module} (line {item.lineno}), "
                                    "which is not allowed (no private names, no modules re-exported)")
        elif isinstance(item, ast.Name) and item.id in FORBIDDEN_NAMES:
            problems.append(f"the controller uses {item.id} (line {item.lineno}), which is not allowed")
        elif isinstance(item, ast.Attribute):
            if item.attr.startswith("_"):
                problems.append(f"the controller uses the attribute {item.attr} (line {item.lineno}); "
                                "private and double-underscore attributes are not allowed")
            elif item.attr in FORBIDDEN_ATTRIBUTES:
                problems.append(f"the controller uses .{item.attr} (line {item.lineno}), which is not allowed "
                                "(it reaches files, foreign code or the interpreter's internals)")
        elif isinstance(item, (ast.Global, ast.Nonlocal)):
            problems.append(f"the controller uses a {type(item).__name__.lower()} statement "
                            f"(line {item.lineno}), which is not allowed")
    return problems
