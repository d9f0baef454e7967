"""Source code as a value: extract it, compile it, and point at the failing line."""

from __future__ import annotations
import __future__

import ast
import inspect
import linecache
import textwrap
import traceback
from collections.abc import Callable
from typing import Any

_ANNOTATIONS_FLAG = __future__.annotations.compiler_flag


class CodeDefinitionError(Exception):
    """Code text that does not define the function it must define."""


def _definition(fn: Callable) -> tuple[list[str], ast.FunctionDef | ast.AsyncFunctionDef, int]:
    """The dedented source lines of ``fn``, its ``def`` node, and the file line of the first source line.

    Raises ``CodeDefinitionError`` when Python cannot find the source (functions made
    by ``exec`` or typed at an interactive prompt).
    """
    try:
        lines, first_line = inspect.getsourcelines(fn)
    except (OSError, TypeError) as error:
        raise CodeDefinitionError(
            f"cannot read the source of {fn.__name__}: {error}. Trainable code needs a "
            "function defined in a file") from error
    source = textwrap.dedent("".join(lines))
    definition = next((item for item in ast.parse(source).body
                       if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if definition is None:
        raise CodeDefinitionError(f"the source of {fn.__name__} is not a def statement")
    return source.splitlines(), definition, first_line


def function_source(fn: Callable) -> str:
    """The ``def`` of ``fn`` without decorators, dedented (see :func:`_definition` for errors)."""
    lines, definition, _ = _definition(fn)
    return "\n".join(lines[definition.lineno - 1:]).rstrip() + "\n"


def _is_bundle(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name == "bundle"


def bundled_source(fn: Callable) -> tuple[str, int]:
    """The source of ``fn`` as bundled: the text below its innermost ``@bundle(...)``
    decorator (the decorators under it stay, they are part of the function), and the
    file line where that text starts. Without a ``bundle`` decorator (``bundle()(fn)``)
    the whole definition, decorators included.
    """
    lines, definition, first_line = _definition(fn)
    bundles = [item for item in definition.decorator_list if _is_bundle(item)]
    if bundles:
        start = bundles[-1].end_lineno + 1
    else:
        start = min([item.lineno for item in definition.decorator_list] + [definition.lineno])
    return "\n".join(lines[start - 1:]).strip("\n"), first_line + start - 1


def signature_line(source: str, fn_name: str) -> str:
    """The ``def name(...):`` header of ``fn_name`` in ``source``, as written."""
    tree = ast.parse(source)
    for item in tree.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == fn_name:
            lines = source.splitlines()
            body_start = item.body[0].lineno - 1
            header = lines[item.lineno - 1:max(body_start, item.lineno)]
            return "\n".join(header).strip()
    raise CodeDefinitionError(f"no function named {fn_name!r}")


def compile_function(source: str, fn_name: str, namespace: dict[str, Any], filename: str,
                     future_annotations: bool = False) -> Callable:
    """Execute ``source`` in ``namespace`` and return the function ``fn_name`` it defines.

    Raises ``SyntaxError`` for code that does not parse, ``CodeDefinitionError`` when
    the function is missing, and whatever the module-level code raises.
    """
    if not isinstance(source, str):
        raise CodeDefinitionError(f"code must be text, got {type(source).__name__}")
    lines = [line + "\n" for line in source.split("\n")]
    linecache.cache[filename] = (len(source), None, lines, filename)
    flags = _ANNOTATIONS_FLAG if future_annotations else 0
    code = compile(source, filename, "exec", flags=flags, dont_inherit=True)
    exec(code, namespace)  # noqa: S102 - running trainable code is this module's job
    fn = namespace.get(fn_name)
    if not callable(fn):
        defined = sorted(name for name, value in namespace.items()
                         if inspect.isfunction(value) and getattr(value, "__code__", None)
                         and value.__code__.co_filename == filename)
        found = f" (it defines {', '.join(defined)})" if defined else ""
        raise CodeDefinitionError(f"the code must define a function named {fn_name!r}{found}")
    return fn


def failing_line(error: BaseException, filename: str) -> int | None:
    """The 1-based line of ``filename`` where ``error`` was raised, if it was."""
    if isinstance(error, SyntaxError) and error.filename == filename:
        return error.lineno
    line = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line


def annotate(source: str, line: int | None, context_lines: int = 6, max_lines: int = 40) -> str:
    """Number the lines of ``source`` and mark ``line`` with ``>>``."""
    lines = source.split("\n")  # Python's own line breaks, as line numbers count
    start, end = 0, len(lines)
    if len(lines) > max_lines:
        if line is None:
            end = max_lines
        else:
            start = max(0, line - 1 - context_lines)
            end = min(len(lines), line + context_lines)
    width = len(str(end))
    out = [] if start == 0 else [f"   {'...':>{width}}"]
    for number in range(start + 1, end + 1):
        marker = ">>" if number == line else "  "
        out.append(f"{marker} {number:>{width}} | {lines[number - 1]}")
    if end < len(lines):
        out.append(f"   {'...':>{width}}")
    return "\n".join(out)


def describe_error(error: BaseException, source: str | None, filename: str | None, fn_name: str) -> str:
    """The error as feedback: type, message, and the source with the failing line marked."""
    message = str(error) if not isinstance(error, SyntaxError) else (error.msg or str(error))
    text = f"({type(error).__name__}) {message}"
    if source is None or filename is None:
        return text
    line = failing_line(error, filename)
    where = f"line {line} of {fn_name}" if line else f"the code of {fn_name}"
    return f"{text}\n  at {where}:\n{annotate(source, line)}"
