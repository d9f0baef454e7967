"""``bundle``: a Python function (or method) recorded as one graph operation.

With ``trainable=True`` the function's source text is a ParameterNode (``__code``):
each call runs the *current* text, compiled once per distinct version, so after an
optimizer rewrites it the next call runs the new code.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

from trace_control.trace import context
from trace_control.trace.errors import ExecutionError, TraceError
from trace_control.trace.nodes import ExceptionNode, MessageNode, Node, ParameterNode, constant_node
from trace_control.trace.source import (
    _ANNOTATIONS_FLAG,
    compile_function,
    describe_error,
    function_source,
    signature_line,
)


class _InstanceView:
    """What a bundled method sees as ``self``: node attributes read as plain values.

    Reads are recorded, so the instance's parameters become the operation's inputs,
    and the code behaves exactly as it does once exported without trace_control.
    """

    __slots__ = ("_instance",)

    def __init__(self, instance: Any) -> None:
        object.__setattr__(self, "_instance", instance)

    def __getattr__(self, name: str) -> Any:
        value = getattr(object.__getattribute__(self, "_instance"), name)
        if isinstance(value, Node):
            context.record_use(value)
            return value._data
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_instance"), name, value)


class FunOp:
    """A bundled function. Call it like the function; it returns a MessageNode.

    Attributes: ``name`` (the function's name), ``doc`` (documentation shown to the
    optimizer), ``parameter`` (the ``__code`` ParameterNode when trainable, else None).
    """

    def __init__(self, fn: Callable, description: str | None, trainable: bool,
                 catch_execution_error: bool, allow_external_dependencies: bool,
                 instance: Any = None, template: FunOp | None = None) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.doc = description if description is not None else (inspect.getdoc(fn) or "")
        self.trainable = trainable
        self.catch_execution_error = catch_execution_error
        self.allow_external_dependencies = allow_external_dependencies
        self.signature = inspect.signature(fn)
        self._arg_names = [p.name for p in self.signature.parameters.values()]
        self._simple_positional = all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in self.signature.parameters.values())
        self._instance_ref = weakref.ref(instance) if instance is not None else None
        self._template = template
        self._parameter: ParameterNode | None = None
        self._compiled: tuple[str, Callable] | None = None
        self._source: str | None = None
        self._description = f"[{self.name}] {self.doc}"
        self._info = {"op": self}
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__wrapped__ = fn

    # -- code parameter ---------------------------------------------------------
    @property
    def source(self) -> str:
        """The original source of the function (without decorators)."""
        if self._source is None:
            self._source = self._template.source if self._template else function_source(self.fn)
        return self._source

    @property
    def parameter(self) -> ParameterNode | None:
        """The trainable ``__code`` node (created on first use), or None."""
        if not self.trainable:
            return None
        if self._parameter is None:
            template = self._template
            start = template._parameter._data if template and template._parameter else self.source
            self._parameter = ParameterNode(
                start, name="__code",
                description=f"The code of the function {self.name}. {self.doc}".strip(),
                constraint=f"The code must define the function with this exact signature:\n"
                           f"{signature_line(self.source, self.name)}",
                info={"fn_name": self.name})
        return self._parameter

    @property
    def code_filename(self) -> str:
        return f"<trace_control {self.name} {id(self):x}>"

    def current_function(self) -> Callable:
        """The function the current code defines (compiled once per distinct text)."""
        if not self.trainable:
            return self.fn
        text = self.parameter._data
        compiled = self._compiled
        if compiled is not None and (compiled[0] is text or compiled[0] == text):
            return compiled[1]
        namespace = dict(self.fn.__globals__)
        if self.fn.__closure__:
            for var, cell in zip(self.fn.__code__.co_freevars, self.fn.__closure__, strict=False):
                try:
                    namespace[var] = cell.cell_contents
                except ValueError:  # an empty cell: the variable was never assigned
                    pass
        future = bool(self.fn.__code__.co_flags & _ANNOTATIONS_FLAG)
        fn = compile_function(text, self.name, namespace, self.code_filename, future)
        self._compiled = (text, fn)
        return fn

    # -- calling ----------------------------------------------------------------
    def __get__(self, instance: Any, owner: type | None = None) -> FunOp:
        if instance is None:
            return self
        key = f"__bundle_{self.name}"
        bound = instance.__dict__.get(key)
        if bound is None:
            bound = FunOp(self.fn, self.doc, self.trainable, self.catch_execution_error,
                          self.allow_external_dependencies, instance=instance, template=self)
            instance.__dict__[key] = bound
        return bound

    @property
    def instance(self) -> Any:
        return self._instance_ref() if self._instance_ref is not None else None

    def _named_arguments(self, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
        if not kwargs and self._simple_positional and len(args) <= len(self._arg_names):
            return list(zip(self._arg_names, args, strict=False))
        bound = self.signature.bind(*args, **kwargs)
        named: list[tuple[str, Any]] = []
        for name, value in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                named += [(f"{name}{i}", item) for i, item in enumerate(value)]
            elif kind is inspect.Parameter.VAR_KEYWORD:
                named += list(value.items())
            else:
                named.append((name, value))
        return named

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        instance = None
        if self._instance_ref is not None:
            instance = self._instance_ref()
            if instance is None:
                raise TraceError(f"the object that owns {self.name} no longer exists")
            args = (instance,) + args
        if not context.is_tracing():
            return self._call_untraced(instance, args, kwargs)
        inputs: dict[str, Node] = {}
        if not kwargs and self._simple_positional and len(args) <= len(self._arg_names):
            # the common case, in one pass: positional arguments only
            plain_args = []
            for name, value in zip(self._arg_names, args, strict=False):
                if isinstance(value, Node):
                    inputs[name] = value
                    plain_args.append(value._data)
                elif instance is not None and value is instance:
                    plain_args.append(_InstanceView(instance))
                else:
                    inputs[name] = constant_node(value, name)
                    plain_args.append(value)
        else:
            for name, value in self._named_arguments(args, kwargs):
                if instance is not None and value is instance:
                    continue
                inputs[name] = value if isinstance(value, Node) else constant_node(value, name)
            plain_args = [a._data if isinstance(a, Node) else a for a in args]
            if instance is not None:
                plain_args[0] = _InstanceView(instance)
            if kwargs:
                kwargs = {k: v._data if isinstance(v, Node) else v for k, v in kwargs.items()}
        if self.trainable:
            inputs["__code"] = self._parameter if self._parameter is not None else self.parameter
        used: list[Node] = []
        token = context.enter_op_body(used)
        try:
            result = self.current_function()(*plain_args, **kwargs)
        except Exception as error:
            context.exit_op_body(token)
            self._add_dependencies(inputs, used, instance)
            if not self.catch_execution_error:
                raise
            text = self.describe(error)
            failed = ExceptionNode(text, inputs, error, name=self.name, description=self._description,
                                   info=self._info)
            raise ExecutionError(failed) from error
        context.exit_op_body(token)
        if used:
            self._add_dependencies(inputs, used, instance)
        if isinstance(result, Node):
            result = result._data
        return MessageNode(result, inputs, self.name, self._description, self._info)

    def plain_function(self) -> Callable:
        """The current code as a plain callable (no nodes, no tracing): for fast rollouts.

        For a method the object's node attributes read as plain values, as in a traced
        call. Errors propagate unchanged; :meth:`describe` turns one into feedback text.
        """
        fn = self.current_function()
        instance = self.instance
        if instance is None:
            return fn
        view = _InstanceView(instance)
        return lambda *args, **kwargs: fn(view, *args, **kwargs)

    def describe(self, error: BaseException) -> str:
        """``error`` (raised by this op's code) as feedback: the failing line marked."""
        if not self.trainable:
            return describe_error(error, None, None, self.name)
        return describe_error(error, self.parameter._data, self.code_filename, self.name)

    def _call_untraced(self, instance: Any, args: tuple, kwargs: dict) -> Any:
        def plain(value: Any) -> Any:
            return value.data if isinstance(value, Node) else value

        args = tuple(plain(a) for a in args)
        if instance is not None:
            args = (_InstanceView(instance),) + args[1:]
        result = self.current_function()(*args, **{key: plain(v) for key, v in kwargs.items()})
        if isinstance(result, Node):
            result = result._data
        return result if context.in_op_body() else Node(result, name=self.name)

    def _add_dependencies(self, inputs: dict[str, Node], used: list[Node], instance: Any) -> None:
        known = {id(n) for n in inputs.values()}
        owned = {}
        if instance is not None:
            owned = {id(value): attr for attr, value in vars(instance).items() if isinstance(value, Node)}
        for dependency in used:
            if id(dependency) in known:
                continue
            known.add(id(dependency))
            if id(dependency) in owned:
                inputs[owned[id(dependency)]] = dependency
            elif self.allow_external_dependencies:
                inputs[dependency.py_name] = dependency
            else:
                raise TraceError(
                    f"{self.name} read the node {dependency.name} without receiving it as an input; "
                    "pass it as an argument, or use bundle(allow_external_dependencies=True)")

    def __repr__(self) -> str:
        return f"<bundled op {self.name}{' (trainable)' if self.trainable else ''}>"


def bundle(description: str | None = None, trainable: bool = False, catch_execution_error: bool = True,
           allow_external_dependencies: bool = False) -> Callable[[Callable], FunOp]:
    """Decorator: record calls of the function as single graph operations.

    ``description`` replaces the docstring as the op's documentation. With
    ``trainable`` the source is a ParameterNode the optimizer can rewrite. With
    ``catch_execution_error`` errors raise :class:`ExecutionError` carrying an
    ExceptionNode; otherwise they propagate unchanged. Nodes read inside the body that
    were not passed in raise :class:`TraceError`, unless they are attributes of the
    method's own object or ``allow_external_dependencies`` is set.
    """
    if callable(description) and not isinstance(description, str):
        raise TypeError("use @bundle() with parentheses")

    def decorate(fn: Callable) -> FunOp:
        return FunOp(fn, description, trainable, catch_execution_error, allow_external_dependencies)

    return decorate
