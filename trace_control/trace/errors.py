"""Errors raised by traced operations."""

from __future__ import annotations


class TraceError(Exception):
    """Misuse of the tracing API (e.g. an undeclared dependency, a second backward)."""


class TraceMissingInputsError(TraceError):
    """A bundled body read a node it did not receive as an input (see ``allow_external_dependencies``)."""


class ExecutionError(Exception):
    """A traced operation raised. ``exception_node`` holds the error as a graph node.

    Call ``err.exception_node.backward(...)`` to send the error to the parameters that
    led to it: the error text (with the failing source line marked, for trainable
    code) is what the optimizer reads.
    """

    def __init__(self, exception_node) -> None:
        super().__init__(exception_node.data)
        self.exception_node = exception_node

    @property
    def exception(self) -> BaseException:
        return self.exception_node.exception
