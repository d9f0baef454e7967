"""Isolation of LLM-written controller code: static checks and sandboxed worker processes."""

from trace_control.sandbox.checks import ALLOWED_IMPORTS, MAX_CODE_CHARS, check_controller_code
from trace_control.sandbox.runner import Limits, SandboxPool, SandboxWorker, WorkerFailure, clean_environment

__all__ = ["ALLOWED_IMPORTS", "MAX_CODE_CHARS", "Limits", "SandboxPool", "SandboxWorker", "WorkerFailure",
           "check_controller_code", "clean_environment"]
