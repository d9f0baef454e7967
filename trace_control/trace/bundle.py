"""``bundle``: a Python function (or method) recorded as one graph operation.

With ``trainable=True`` the function's source text is a ParameterNode (``__code``):
each call runs the *current* text, compiled once per distinct version, so after an
optimizer rewrites it the next call runs the new code. ``async def`` functions give
operations to ``await``.
"""

from __future__ import annotations

import copy
import inspect
import re
import weakref
from collections.abc import Callable
from typing import Any, NoReturn

from trace_control.trace import context
from trace_control.trace.containers import ParameterContainer
from trace_control.trace.errors import ExecutionError, TraceError, TraceMissingInputsError
from trace_control.trace.nodes import (
    ExceptionNode,
    MessageNode,
    NestedMessageNode,
    Node,
    ParameterNode,
    constant_node,
)
from trace_control.trace.source import (
    _ANNOTATIONS_FLAG,
    bundled_source,
    compile_function,
    describe_error,
    signature_line,
)

_OP_TAG = re.compile(r"^\[([^\[\]]+)\]\s*")


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


class FunOp(ParameterContainer):
    """A bundled function. Call it like the function; it returns a MessageNode.

    Attributes: ``name`` (the function's name), ``op_name`` (the name of the nodes it
    makes: a leading ``[tag]`` of the description, else the function's name), ``doc``
    (documentation shown to the optimizer), ``parameter`` (the ``__code``
    ParameterNode when trainable, else None), ``info`` (the function's name, doc,
    signature, source, line number and file). As a parameter container it has
    ``parameters()``, ``state_dict()``, ``save`` and ``load``.
    """

    def __init__(self, fn: Callable, description: str | None, trainable: bool,
                 catch_execution_error: bool, allow_external_dependencies: bool,
                 traceable_code: bool = False, instance: Any = None, template: FunOp | None = None) -> None:
        self.fn = fn
        self.name = fn.__name__
        text = description if description is not None else (inspect.getdoc(fn) or "")
        tag = _OP_TAG.match(text)
        self.op_name = tag.group(1) if tag else self.name
        self.doc = text[tag.end():] if tag else text
        self.trainable = trainable
        self.catch_execution_error = catch_execution_error
        self.allow_external_dependencies = allow_external_dependencies
        self.traceable_code = traceable_code
        self._settings = (description, trainable, catch_execution_error, allow_external_dependencies, traceable_code)
        self.signature = inspect.signature(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        self._arg_names = [p.name for p in self.signature.parameters.values()]
        self._simple_positional = all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in self.signature.parameters.values())
        self._instance_ref = weakref.ref(instance) if instance is not None else None
        self._template = template
        self._parameter: ParameterNode | None = None
        self._compiled: tuple[str, Callable] | None = None
        self._source: tuple[str, int] | None = None
        self.description = f"[{self.op_name}] {self.doc}"
        # shared by the nodes this op makes; completed with the source on first read of ``info``
        self._info: dict[str, Any] = {"op": self, "fun_name": self.name, "doc": self.doc,
                                      "external_dependencies": ()}
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__wrapped__ = fn

    # -- code parameter ---------------------------------------------------------
    @property
    def source(self) -> str:
        """The function's source as bundled (decorators under ``@bundle`` included)."""
        return self._located_source()[0]

    def _located_source(self) -> tuple[str, int]:
        if self._source is None:
            self._source = self._template._located_source() if self._template else bundled_source(self.fn)
        return self._source

    @property
    def info(self) -> dict[str, Any]:
        """``fun_name``, ``doc``, ``signature``, ``source``, ``line_number``, ``file`` (and ``op``)."""
        if "source" not in self._info:
            source, line = self._located_source()
            self._info.update(signature=self.signature, source=source, line_number=line,
                              file=inspect.getsourcefile(self.fn))
        return self._info

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

    def parameters_dict(self) -> dict[str, ParameterNode]:
        """``{"__code": parameter}`` when trainable, else empty."""
        return {"__code": self.parameter} if self.trainable else {}

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

    # -- binding and copying ------------------------------------------------------
    def __get__(self, instance: Any, owner: type | None = None) -> FunOp:
        if instance is None:
            return self
        key = f"__bundle_{self.name}"
        bound = instance.__dict__.get(key)
        if bound is None:
            bound = FunOp(self.fn, *self._settings, instance=instance, template=self)
            instance.__dict__[key] = bound
        return bound

    def __deepcopy__(self, memo: dict) -> FunOp:
        """A copy with its own code parameter; a method's copy is bound to the copied object."""
        instance = self.instance
        twin = FunOp(self.fn, *self._settings, instance=memo.get(id(instance), instance),
                     template=self._template)
        memo[id(self)] = twin
        if self._parameter is not None:
            twin._parameter = copy.deepcopy(self._parameter, memo)
        return twin

    @property
    def instance(self) -> Any:
        return self._instance_ref() if self._instance_ref is not None else None

    # -- calling ----------------------------------------------------------------
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
        if self.is_async:
            return self._call_async(instance, args, kwargs)
        if not context.is_tracing():
            return self._finish_untraced(self.current_function()(*self._plain(instance, args),
                                                                 **self._plain_kwargs(kwargs)))
        if self.traceable_code:
            return self._call_traceable(instance, args, kwargs)
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
            inputs, plain_args, kwargs = self._inputs(instance, args, kwargs)
        if self.trainable:
            inputs["__code"] = self._parameter if self._parameter is not None else self.parameter
        used: list[Node] = []
        token = context.enter_op_body(used)
        try:
            result = self.current_function()(*plain_args, **kwargs)
        except Exception as error:
            context.exit_op_body(token)
            self._fail(error, inputs, used, instance)
        context.exit_op_body(token)
        return self._finish(result, inputs, used, instance)

    def _inputs(self, instance: Any, args: tuple, kwargs: dict) -> tuple[dict[str, Node], list, dict]:
        """The op's inputs by argument name, and the plain arguments for the body."""
        inputs: dict[str, Node] = {}
        for name, value in self._named_arguments(args, kwargs):
            if instance is not None and value is instance:
                continue
            inputs[name] = value if isinstance(value, Node) else constant_node(value, name)
        return inputs, self._plain(instance, args), self._plain_kwargs(kwargs)

    @staticmethod
    def _plain(instance: Any, args: tuple) -> list:
        """The arguments as the body sees them: values, and the instance as an ``_InstanceView``."""
        plain = [a.data if isinstance(a, Node) else a for a in args]
        if instance is not None:
            plain[0] = _InstanceView(instance)
        return plain

    @staticmethod
    def _plain_kwargs(kwargs: dict) -> dict:
        return {key: value.data if isinstance(value, Node) else value for key, value in kwargs.items()}

    def _finish(self, result: Any, inputs: dict[str, Node], used: list[Node], instance: Any) -> MessageNode:
        """The call's output node; the nodes the body read join its inputs."""
        info = self._info
        if used:
            external = self._add_dependencies(inputs, used, instance)
            if external:
                info = {**info, "external_dependencies": external}
        if isinstance(result, Node):
            result = result._data
        return MessageNode(result, inputs, self.op_name, self.description, info)

    def _fail(self, error: Exception, inputs: dict[str, Node], used: list[Node], instance: Any) -> NoReturn:
        self._add_dependencies(inputs, used, instance)
        if not self.catch_execution_error:
            raise error
        failed = ExceptionNode(self.describe(error), inputs, error, name=self.op_name,
                               description=self.description, info=self._info)
        raise ExecutionError(failed) from error

    def _finish_untraced(self, result: Any) -> Any:
        if isinstance(result, Node):
            result = result._data
        return result if context.in_op_body() else Node(result, name=self.op_name)

    async def _call_async(self, instance: Any, args: tuple, kwargs: dict) -> Any:
        """The awaitable form of a call, for ``async def`` functions."""
        if not context.is_tracing():
            return self._finish_untraced(await self.current_function()(*self._plain(instance, args),
                                                                       **self._plain_kwargs(kwargs)))
        inputs, plain_args, plain_kwargs = self._inputs(instance, args, kwargs)
        if self.trainable:
            inputs["__code"] = self.parameter
        used: list[Node] = []
        token = context.enter_op_body(used)
        try:
            result = await self.current_function()(*plain_args, **plain_kwargs)
        except Exception as error:
            context.exit_op_body(token)
            self._fail(error, inputs, used, instance)
        context.exit_op_body(token)
        return self._finish(result, inputs, used, instance)

    def _call_traceable(self, instance: Any, args: tuple, kwargs: dict) -> NestedMessageNode:
        """Run the body on copies of the input nodes, tracing inside it (``traceable_code``).

        The result records the body's own graph: ``info["output"]`` is its output, and
        the parameters that graph read beyond this op's inputs are its hidden dependencies.
        """
        inputs: dict[str, Node] = {}
        input_of: dict[int, Node] = {}  # id(argument) -> its input node
        for name, value in self._named_arguments(args, kwargs):
            if instance is not None and value is instance:
                continue
            inputs[name] = input_of[id(value)] = value if isinstance(value, Node) else constant_node(value, name)
        copies = {id(n): n.detach() for n in inputs.values()}

        def inner(value: Any) -> Any:  # what the body receives for an argument
            return copies[id(input_of[id(value)])] if id(value) in input_of else value

        inner_args = [inner(value) for value in args]
        inner_kwargs = {key: inner(value) for key, value in kwargs.items()}
        if self.trainable:
            inputs["__code"] = self.parameter
        try:
            result = self.current_function()(*inner_args, **inner_kwargs)
        except Exception as error:
            self._fail(error, inputs, [], instance)
        inner = result if isinstance(result, Node) else None
        hidden: frozenset = frozenset()
        if inner is not None:
            outer = set().union(*(n.parameter_dependencies for n in inputs.values()))
            copied = {id(n) for n in copies.values()}
            found = set(inner.parameter_dependencies)
            for nested in inner.expandable_dependencies:
                found |= nested.hidden_dependencies
            hidden = frozenset(p for p in found if p not in outer and id(p) not in copied)
        info = {**self._info, "output": inner,
                "inputs": {"args": inner_args, "kwargs": inner_kwargs}}
        value = result._data if inner is not None else result
        return NestedMessageNode(value, inputs, self.op_name, self.description, info, hidden)

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

    def _add_dependencies(self, inputs: dict[str, Node], used: list[Node], instance: Any) -> tuple[Node, ...]:
        """Add the nodes the body read to ``inputs``; return those that were neither passed nor owned."""
        known = {id(n) for n in inputs.values()}
        owned = {}
        if instance is not None:
            owned = {id(value): attr for attr, value in vars(instance).items() if isinstance(value, Node)}
        external = []
        for dependency in used:
            if id(dependency) in known:
                continue
            known.add(id(dependency))
            if id(dependency) in owned:
                inputs[owned[id(dependency)]] = dependency
            elif self.allow_external_dependencies:
                inputs[dependency.py_name] = dependency
                external.append(dependency)
            else:
                raise TraceMissingInputsError(
                    f"{self.name} read the node {dependency.name} without receiving it as an input; "
                    "pass it as an argument, or use bundle(allow_external_dependencies=True)")
        return tuple(external)

    def __repr__(self) -> str:
        return f"<bundled op {self.name}{' (trainable)' if self.trainable else ''}>"


def bundle(description: str | None = None, trainable: bool = False, catch_execution_error: bool = True,
           allow_external_dependencies: bool = False, traceable_code: bool = False,
           overwrite_python_recursion: bool | None = None) -> Callable[[Callable], FunOp]:
    """Decorator: record calls of the function as single graph operations.

    ``description`` replaces the docstring as the op's documentation; a leading
    ``[name]`` names the op. With ``trainable`` the source is a ParameterNode the
    optimizer can rewrite. With ``catch_execution_error`` errors raise
    :class:`ExecutionError` carrying an ExceptionNode; otherwise they propagate
    unchanged. Nodes read inside the body that were not passed in raise
    :class:`TraceMissingInputsError`, unless they are attributes of the method's own
    object or ``allow_external_dependencies`` is set (then they become inputs and are
    listed in the output's ``info["external_dependencies"]``).

    ``traceable_code``: the body receives copies of the input nodes and its own
    operations are traced into an inner graph (``output.info["output"]``); see
    :meth:`Feedback.expand`. ``overwrite_python_recursion``: accepted as ``True`` (or
    left out) for trace-opt code; inside a bundled body, calls of bundled functions
    (recursive ones included) always run as plain functions.
    """
    if callable(description) and not isinstance(description, str):
        raise TypeError("use @bundle() with parentheses")
    if overwrite_python_recursion is False:
        raise TypeError("overwrite_python_recursion=False is not supported: inside a bundled body, calls of "
                        "bundled functions run as plain functions; drop the argument")

    def decorate(fn: Callable) -> FunOp:
        return FunOp(fn, description, trainable, catch_execution_error, allow_external_dependencies,
                     traceable_code)

    return decorate
