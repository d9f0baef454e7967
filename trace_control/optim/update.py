"""From a parsed suggestion to a validated update: names, types and code are checked.

Nothing that fails a check is applied, and nothing is dropped silently: every
rejection is returned as a sentence the optimizer shows the LLM next time. Every
function here is total over parsed answers: odd values become reasons, not exceptions.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

from trace_control.optim.parse import OversizedNumber, read_literal
from trace_control.optim.problem import is_code
from trace_control.optim.render import clip, compact, same_value
from trace_control.optim.tokens import fits
from trace_control.trace import ParameterNode

CodeChecker = Callable[[str, str], list[str]]  # (code, function name) -> problems

MAX_VALUE_DEPTH = 16
MAX_INTEGER_BITS = 1000  # a float holds up to 2**1024
# Characters that str.splitlines() (line numbers in errors, the exported file) treats as line
# breaks but Python's compiler does not: the code that is checked must be the code that runs.
REFUSED_LINE_BREAKS = {
    "\u2028": "U+2028 (line separator)", "\u2029": "U+2029 (paragraph separator)", "\x0c": "form feed (\\x0c)",
    "\x0b": "vertical tab (\\x0b)", "\x1c": "\\x1c", "\x1d": "\\x1d", "\x1e": "\\x1e", "\x85": "U+0085 (next line)",
}


def _key(name: str) -> str:
    name = name.strip().strip("`'\"")
    name = re.sub(r"^\(\w+\)\s*", "", name)  # "(code) __code0" -> "__code0"
    return name.replace(":", "").replace(" ", "")


def resolve_names(suggestion: dict[str, Any], parameters: list[ParameterNode],
                  aliases: dict[str, ParameterNode] | None = None) -> tuple[dict[ParameterNode, Any], list[str]]:
    """Map suggested names (``__code0``, ``__code:0``, aliases) to parameters."""
    table: dict[str, ParameterNode] = {}
    for parameter in parameters:
        table[_key(parameter.py_name)] = parameter
        table.setdefault(_key(parameter.name), parameter)
    for alias, parameter in (aliases or {}).items():
        table.setdefault(_key(alias), parameter)
    resolved: dict[ParameterNode, Any] = {}
    problems = []
    for name, value in suggestion.items():
        parameter = table.get(_key(name))
        if parameter is None:
            known = ", ".join(p.py_name for p in parameters)
            problems.append(f"{clip(name, 80)!r} is not a variable you can change (the variables are: {known})")
        else:
            resolved[parameter] = value
    return resolved, problems


def check_plain(value: Any, depth: int = 0) -> None:
    """Raise ``ValueError`` unless ``value`` is plain data a parameter may hold.

    Plain: None, booleans, integers that fit a float, floats (NaN and infinities
    included), text, and lists or text-keyed dicts of plain data, nested at most
    ``MAX_VALUE_DEPTH`` deep.
    """
    if depth > MAX_VALUE_DEPTH:
        raise ValueError(f"it is nested more than {MAX_VALUE_DEPTH} levels deep")
    if isinstance(value, OversizedNumber):
        raise ValueError(f"a number of {value.digits:,} digits is out of range")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INTEGER_BITS:
        raise ValueError("an integer beyond the range of a float is out of range")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("dict keys must be text")
            check_plain(item, depth + 1)
        return
    raise ValueError(f"it must be plain data (numbers, text, lists, dicts), not {type(value).__name__}")


def convert(value: Any, old: Any, name: str) -> Any:
    """``value`` in the type of ``old``; raises ``ValueError`` with a reason otherwise."""
    if isinstance(value, str) and old is not None and not isinstance(old, str):
        try:
            value = read_literal(value)
        except ValueError:
            raise ValueError(f"{name} must be a {type(old).__name__}, got the text {clip(value, 80)!r}") from None
    try:
        check_plain(value)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    if old is None:
        return value
    if isinstance(old, str):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be text, got {type(value).__name__}")
        return value
    if isinstance(old, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {compact(value, 80)}")
    if isinstance(old, (int, float)):
        return _number(value, old, name)
    if isinstance(old, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {type(value).__name__}")
        return list(value) if isinstance(old, list) else tuple(value)
    if isinstance(old, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a dict, got {type(value).__name__}")
        return value
    if hasattr(old, "dtype") and hasattr(old, "shape"):  # numpy array
        import numpy

        try:
            return numpy.asarray(value, dtype=old.dtype)
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"{name} must be an array of {old.dtype}: {clip(str(error), 200)}") from None
    if type(value) is not type(old):
        raise ValueError(f"{name} must be a {type(old).__name__}, got {type(value).__name__}")
    return value


def _number(value: Any, old: int | float, name: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if isinstance(old, float):
        return float(value)
    if isinstance(value, float) and not value.is_integer():  # NaN, infinities and fractions stay floats
        return value
    return int(value)


def normalize_line_breaks(code: str) -> str:
    """``code`` with ``\\r\\n`` and ``\\r`` made ``\\n``; ``ValueError`` for other line-break characters."""
    code = code.replace("\r\n", "\n").replace("\r", "\n")
    found = [label for char, label in REFUSED_LINE_BREAKS.items() if char in code]
    if found:
        raise ValueError(f"the code contains {', '.join(found)}, which Python and the exported file read "
                         "differently; end lines with \\n only and write such characters as escapes in strings")
    return code


def _arguments(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = function.args
    names = [a.arg for a in args.posonlyargs + args.args]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return names


def check_code(code: str, fn_name: str, original: str) -> list[str]:
    """Problems with ``code`` as a new definition of ``fn_name`` (same arguments as ``original``).

    The code must compile (not only parse: ``break`` outside a loop fails here), define
    ``fn_name`` at the top level, keep its arguments, and hold no ``from __future__``
    import (the exported file places the code after other statements).
    """
    try:
        tree = ast.parse(code)
        compile(tree, "<suggested code>", "exec", dont_inherit=True)
    except SyntaxError as error:
        line = f" at line {error.lineno}" if error.lineno else ""
        return [f"the code has a syntax error{line}: {clip(str(error.msg), 300)}"]
    except (ValueError, TypeError, OverflowError, MemoryError, RecursionError) as error:
        return [f"the code cannot be compiled: {clip(str(error), 300)}"]
    if any(isinstance(item, ast.ImportFrom) and item.module == "__future__" for item in tree.body):
        return ["the code must not import from __future__ (the exported controller places it after other "
                "statements, where such imports are not allowed)"]
    functions = {item.name: item for item in tree.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if fn_name not in functions:
        defined = ", ".join(functions) or "no function"
        return [f"the code must define a function named {fn_name} (it defines {defined})"]
    try:
        expected_tree = ast.parse(original)
    except SyntaxError:
        return []
    expected = next((item for item in expected_tree.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and item.name == fn_name), None)
    if expected is not None and _arguments(expected) != _arguments(functions[fn_name]):
        return [f"the function {fn_name} must keep its arguments ({', '.join(_arguments(expected))}); "
                f"the suggestion had ({', '.join(_arguments(functions[fn_name]))})"]
    return []


def _code_problems(code: str, parameter: ParameterNode, original: str, code_checker: CodeChecker | None,
                   max_code_tokens: int | None) -> list[str]:
    fn_name = parameter.info["fn_name"]
    reasons = check_code(code, fn_name, original)
    if not reasons and code_checker is not None:
        try:
            reasons = [clip(str(reason), 500) for reason in code_checker(code, fn_name)]
        except Exception as error:  # noqa: BLE001 - a failing checker is reported, never raised out of step()
            reasons = [f"the code check failed ({type(error).__name__}): {clip(str(error), 300)}"]
    if not reasons and max_code_tokens is not None and not fits(code, max_code_tokens):
        reasons = [f"the code is longer than {max_code_tokens:,} tokens; keep it shorter so that the report "
                   "fits its budget"]
    return reasons


def validate(resolved: dict[ParameterNode, Any], originals: dict[ParameterNode, str],
             code_checker: CodeChecker | None = None,
             max_code_tokens: int | None = None) -> tuple[dict[ParameterNode, Any], list[str]]:
    """Convert and check each value. Returns the accepted update and the rejections.

    Code has its line breaks normalised before it is checked, so the text checked is
    the text applied. ``max_code_tokens`` refuses code too long for the prompt budget.
    """
    accepted: dict[ParameterNode, Any] = {}
    problems: list[str] = []
    for parameter, value in resolved.items():
        name = parameter.py_name
        current = parameter.data
        try:
            converted = convert(value, current, name)
            if is_code(parameter):
                converted = normalize_line_breaks(converted)
        except ValueError as error:
            problems.append(f"the value for {name} was not applied: {error}")
            continue
        if is_code(parameter):
            reasons = _code_problems(converted, parameter, originals.get(parameter, current), code_checker,
                                     max_code_tokens)
            if reasons:
                problems.append(f"the code for {name} was not applied: {'; '.join(reasons)}")
                continue
        if same_value(converted, current):
            continue  # "no change" is a normal outcome
        accepted[parameter] = converted
    return accepted, problems


def apply(update: dict[ParameterNode, Any]) -> None:
    for parameter, value in update.items():
        parameter.set_value(value)
