"""One LLM client for any OpenAI-compatible chat-completions endpoint.

Configured by arguments or the standard environment: ``OPENAI_API_KEY``,
``OPENAI_BASE_URL`` (a local server such as Ollama, vLLM or llama.cpp's), and
``TRACE_CONTROL_MODEL`` for the model name. Retries on 429 / 5xx / timeouts /
dropped connections are the ``openai`` package's own (``max_retries``, honouring
Retry-After); what still fails becomes an :class:`LLMError` with the reason. With a
``limiter`` (:mod:`trace_control.llm.limiter`), every request, retries included, passes
through a budget shared with other clients, and no new call starts once it is spent.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from trace_control.llm.limiter import BudgetHandle, LimitedTransport
from trace_control.llm.recording import Recorder, Replayer, request_key
from trace_control.llm.usage import Usage

DEFAULT_MODEL = "gpt-4o"

NOT_CONFIGURED = (
    "no LLM is configured. Provide one of:\n"
    "  1. an API key:        export OPENAI_API_KEY=...   (model: TRACE_CONTROL_MODEL, default gpt-4o)\n"
    "  2. a local server:    export OPENAI_BASE_URL=http://127.0.0.1:11434/v1 TRACE_CONTROL_MODEL=<model>\n"
    "                        (any OpenAI-compatible server: Ollama, vLLM, llama.cpp)\n"
    "  3. a recorded run:    trace-control train --replay runs/<run>   (re-runs it offline, exactly)"
)


class LLMNotConfiguredError(RuntimeError):
    """Neither a key, a server address nor a recording was given."""

    def __init__(self) -> None:
        super().__init__(NOT_CONFIGURED)


class LLMError(RuntimeError):
    """A call that failed after the client's retries; the message says why."""


@dataclass
class Completion:
    """One answer: its text and why the model stopped (``"length"`` means truncated)."""

    text: str
    finish_reason: str | None = None


class LLMClient:
    """Chat completions with usage accounting and record / replay.

    ``complete(messages, n)`` returns ``n`` answers: one request with ``n`` choices
    where the server supports it, otherwise ``n`` requests. Every answer is recorded
    (``record=path``) under a key made of the request and its sample index, so
    ``replay=path`` re-runs a recorded run offline with identical answers.
    """

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 4, json_mode: bool = True,
                 temperature: float | None = None, max_tokens: int | None = None,
                 record: str | os.PathLike | None = None, replay: str | os.PathLike | None = None,
                 limiter: BudgetHandle | None = None) -> None:
        self.model = model or os.environ.get("TRACE_CONTROL_MODEL") or DEFAULT_MODEL
        self.json_mode = json_mode
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.usage = Usage()
        self.recorder = Recorder(record) if record else None
        self.replayer = Replayer(replay) if replay else None
        self._client: openai.OpenAI | None = None
        self._json_supported = True
        self._n_supported = True
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.max_retries = max_retries
        self.limiter = limiter
        if self.replayer is None:
            key = api_key or os.environ.get("OPENAI_API_KEY")
            if not key and not self.base_url:
                raise LLMNotConfiguredError()
            # local servers accept any key; the client library insists on one
            limited = None if limiter is None else openai.DefaultHttpxClient(
                transport=LimitedTransport(limiter, lease_seconds=timeout + 10))
            self._client = openai.OpenAI(api_key=key or "not-needed", base_url=self.base_url,
                                         timeout=timeout, max_retries=max_retries, http_client=limited)

    @property
    def source(self) -> str:
        """Where answers come from, for logs (never includes the key)."""
        if self.replayer is not None:
            return f"replay of {Path(self.replayer.path).name}"
        return f"{self.model} at {self.base_url or 'the OpenAI API'}"

    def _request(self, messages: list[dict]) -> dict[str, Any]:
        return {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "json": self.json_mode}

    def stop_reason(self) -> str | None:
        """Why no new call may start (the shared budget is spent), or None."""
        return None if self.limiter is None else self.limiter.stop_reason()

    def complete(self, messages: list[dict[str, str]], n: int = 1) -> list[Completion]:
        """Ask for ``n`` answers to ``messages``. Raises :class:`LLMError` on failure, and
        before any request when the shared budget is spent (:meth:`stop_reason`)."""
        if n < 1:
            raise ValueError("n must be at least 1")
        refused = self.stop_reason()
        if refused:
            raise LLMError(refused)
        request = self._request(messages)
        keys = [request_key(request, index) for index in range(n)]
        if self.replayer is not None:
            # a miss ends the run (ReplayMissError); a recording is a file, so every field is checked
            responses = [_recorded(self.replayer.take(key)) for key in keys]
            for key, response in zip(keys, responses):
                if response["first_of_request"]:
                    self.usage.add(self.model, response["prompt_tokens"], response["completion_tokens"])
                if self.recorder is not None:  # a replayed run records too, so it is complete on its own
                    self.recorder.write(key, request, response)
            return [Completion(r["text"], r["finish_reason"]) for r in responses]
        answers: list[dict] = []
        if n > 1 and self._n_supported:
            answers = self._call(messages, n)
            if len(answers) < n:
                self._n_supported = False
        while len(answers) < n:
            answers += self._call(messages, 1)[: n - len(answers)]
        if self.recorder is not None:
            for key, answer in zip(keys, answers, strict=False):
                self.recorder.write(key, request, answer)
        return [Completion(a["text"], a.get("finish_reason")) for a in answers]

    def _create(self, kwargs: dict) -> Any:
        """One request; a 200 whose body cannot be read is retried a bounded number of times
        (the openai client retries 429 / 5xx / timeouts / dropped connections itself)."""
        for attempt in range(self.max_retries):
            try:
                return self._client.chat.completions.create(**kwargs)
            except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError):
                time.sleep(min(2.0, 0.25 * 2 ** attempt))
        return self._client.chat.completions.create(**kwargs)

    def _call(self, messages: list[dict], n: int) -> list[dict]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        if n > 1:
            kwargs["n"] = n
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if self.json_mode and self._json_supported:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            response = self._create(kwargs)
        except openai.BadRequestError as error:
            text = str(error).lower()
            if "response_format" in kwargs and ("response_format" in text or "json" in text):
                self._json_supported = False  # the server refuses JSON mode: ask without it
                return self._call(messages, n)
            if n > 1 and ("'n'" in text or " n " in text or "choices" in text):
                self._n_supported = False
                return self._call(messages, 1)
            self.usage.failed_calls += 1
            raise LLMError(f"the LLM server refused the request: {error}") from error
        except openai.APIStatusError as error:
            self.usage.failed_calls += 1
            raise LLMError(f"the LLM server answered HTTP {error.status_code} after retries: "
                           f"{_short(error.message)}") from error
        except openai.APITimeoutError as error:
            self.usage.failed_calls += 1
            raise LLMError("the LLM server did not answer within the timeout, after retries") from error
        except openai.APIConnectionError as error:
            self.usage.failed_calls += 1
            raise LLMError(f"could not reach the LLM server after retries: {_short(str(error))}") from error
        except (openai.OpenAIError, ValueError, TypeError, AttributeError) as error:
            self.usage.failed_calls += 1
            raise LLMError(f"the LLM server's answer could not be read: {_short(str(error))}") from error
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            self.usage.failed_calls += 1
            raise LLMError(f"the LLM server's answer had no choices: {_short(str(response))}")
        usage = getattr(response, "usage", None)
        prompt_tokens = _token_count(getattr(usage, "prompt_tokens", 0))
        completion_tokens = _token_count(getattr(usage, "completion_tokens", 0))
        self.usage.add(self.model, prompt_tokens, completion_tokens)
        answers = []
        for index, choice in enumerate(choices):
            message = getattr(choice, "message", None)
            text = getattr(message, "content", None) or ""
            # usage is per request: attribute it to the first answer so totals replay exactly
            answers.append({"text": text, "finish_reason": getattr(choice, "finish_reason", None),
                            "prompt_tokens": prompt_tokens if index == 0 else 0,
                            "completion_tokens": completion_tokens if index == 0 else 0,
                            "first_of_request": index == 0})
        return answers


def _recorded(response: object) -> dict:
    """A recorded answer with the fields replay uses, each of the expected type."""
    response = response if isinstance(response, dict) else {}
    text, finish = response.get("text"), response.get("finish_reason")
    return {"text": text if isinstance(text, str) else "", "finish_reason": finish if isinstance(finish, str) else None,
            "prompt_tokens": _token_count(response.get("prompt_tokens", 0)),
            "completion_tokens": _token_count(response.get("completion_tokens", 0)),
            "first_of_request": response.get("first_of_request", True) is not False}


def _token_count(value: object) -> int:
    """A token count as the server reported it; anything that is not a sane count is 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0
    return int(min(max(value, 0), 10**9))


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
