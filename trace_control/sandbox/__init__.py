"""Containment of LLM-written controller code: the jail (the wall) and a static check (advice)."""

from trace_control.sandbox.checks import ALLOWED_IMPORTS, MAX_CODE_CHARS, check_controller_code
from trace_control.sandbox.jail import ControllerRaised, Jail, JailFault, JailLimits, JailStatus, JailUnavailable

__all__ = ["ALLOWED_IMPORTS", "MAX_CODE_CHARS", "ControllerRaised", "Jail", "JailFault", "JailLimits", "JailStatus",
           "JailUnavailable", "check_controller_code"]
