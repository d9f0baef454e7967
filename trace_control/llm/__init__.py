"""LLM access: one OpenAI-compatible client, usage accounting, record / replay."""

from trace_control.llm.client import (
    DEFAULT_MODEL,
    NOT_CONFIGURED,
    Completion,
    LLMClient,
    LLMError,
    LLMNotConfiguredError,
)
from trace_control.llm.recording import Recorder, Replayer, ReplayMissError, request_key
from trace_control.llm.usage import PRICES_PER_MILLION, Usage, price_for

__all__ = [
    "DEFAULT_MODEL", "NOT_CONFIGURED", "PRICES_PER_MILLION", "Completion", "LLMClient", "LLMError",
    "LLMNotConfiguredError", "Recorder", "ReplayMissError", "Replayer", "Usage", "price_for", "request_key",
]
