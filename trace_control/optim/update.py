"""From a parsed suggestion to a validated update: names, types and code are checked.

Nothing that fails a check is applied, and nothing is dropped silently: every
rejection is returned as a sentence the optimizer shows the LLM next time.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from typing import Any

from trace_control.optim.problem import is_code
from trace_control.trace import ParameterNode

CodeChecker = Callable[[str, str], list[str]]  # (code, function name) -> problems


def _key(name: str) -> str:
    name = str(name).strip().strip("`'\"")
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
            problems.append(f"{name!r} is not a variable you can change (the variables are: {known})")
        else:
            resolved[parameter] = value
    return resolved, problems


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return ast.literal_eval(text.strip())


def convert(value: Any, old: Any, name: str) -> Any:
    """``value`` in the type of ``old``; raises ``ValueError`` with a reason otherwise."""
    if old is None:
        return value
    if isinstance(old, str):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be text, got {type(value).__name__}")
        return value
    if isinstance(value, str) and not isinstance(old, str):
        try:
            value = _literal(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ValueError(f"{name} must be a {type(old).__name__}, got the text {value[:80]!r}") from None
    if isinstance(old, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {value!r:.80}")
    if isinstance(old, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {type(value).__name__}")
        if isinstance(old, int) and not float(value).is_integer():
            return float(value)
        return type(old)(value)
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
            array = numpy.asarray(value, dtype=old.dtype)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be an array of {old.dtype}: {error}") from None
        return array
    if type(value) is not type(old):
        raise ValueError(f"{name} must be a {type(old).__name__}, got {type(value).__name__}")
    return value


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
    """Problems with ``code`` as a new definition of ``fn_name`` (same arguments as ``original``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        line = f" at line {error.lineno}" if error.lineno else ""
        return [f"the code has a syntax error{line}: {error.msg}"]
    except (ValueError, MemoryError, RecursionError) as error:
        return [f"the code cannot be parsed: {error}"]
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


def validate(resolved: dict[ParameterNode, Any], originals: dict[ParameterNode, str],
             code_checker: CodeChecker | None = None) -> tuple[dict[ParameterNode, Any], list[str]]:
    """Convert and check each value. Returns the accepted update and the rejections."""
    accepted: dict[ParameterNode, Any] = {}
    problems: list[str] = []
    for parameter, value in resolved.items():
        name = parameter.py_name
        try:
            converted = convert(value, parameter._data, name)
        except ValueError as error:
            problems.append(f"the value for {name} was not applied: {error}")
            continue
        if is_code(parameter):
            fn_name = parameter.info["fn_name"]
            reasons = check_code(converted, fn_name, originals.get(parameter, parameter._data))
            if not reasons and code_checker is not None:
                reasons = code_checker(converted, fn_name)
            if reasons:
                problems.append(f"the code for {name} was not applied: {'; '.join(reasons)}")
                continue
        if _same(converted, parameter._data):
            continue  # "no change" is a normal outcome
        accepted[parameter] = converted
    return accepted, problems


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(type(a) is type(b) and a == b)
    except (ValueError, TypeError):  # numpy arrays compare element-wise
        return False


def apply(update: dict[ParameterNode, Any]) -> None:
    for parameter, value in update.items():
        parameter._set(value)
