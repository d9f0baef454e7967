"""A small OpenAI-compatible chat-completions server on 127.0.0.1 with scripted answers.

Tests point the real ``openai`` client at it. Each script item is an answer text, or
a dict describing a fault: ``{"status": 429, "headers": {...}}``, ``{"delay": 3.0}``
(answer late), ``{"drop": True}`` (close the connection), ``{"raw": "not json"}``
(a 200 whose body is not JSON), ``{"content": text, "finish_reason": "length"}``,
``{"content": text, "delay": 1.0}`` (a normal answer, late). ``answer_delay`` makes every
request take at least that long (an LLM's latency); ``most_at_once`` is the largest number
of requests the server was answering at the same time, and ``arrivals`` the time each arrived.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NO_CHANGE = json.dumps({"reasoning": "nothing to change", "suggestion": {}})


class ScriptedLLMServer:
    """Serve scripted answers; ``requests`` keeps every request body received."""

    def __init__(self, script: list[Any] | Callable[[dict], Any] | None = None, default: Any = NO_CHANGE,
                 support_n: bool = True, support_json_mode: bool = True, answer_delay: float = 0.0) -> None:
        self.script = list(script or []) if not callable(script) else script
        self.default = default
        self.support_n = support_n
        self.support_json_mode = support_json_mode
        self.requests: list[dict] = []
        self.answer_delay = answer_delay
        self.at_once = 0
        self.most_at_once = 0
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def next_item(self, body: dict) -> Any:
        with self.lock:
            if callable(self.script):
                return self.script(body)
            return self.script.pop(0) if self.script else self.default

    def start(self) -> ScriptedLLMServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, str(value))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: expected in tests
                    pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                with owner.lock:
                    owner.at_once += 1
                    owner.most_at_once = max(owner.most_at_once, owner.at_once)
                    owner.arrivals.append(time.monotonic())
                try:
                    time.sleep(owner.answer_delay)
                    self._answer()
                finally:
                    with owner.lock:
                        owner.at_once -= 1

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with owner.lock:
                    owner.requests.append(body)
                if not owner.support_json_mode and "response_format" in body:
                    error = {"error": {"message": "response_format is not supported by this server",
                                       "type": "invalid_request_error"}}
                    self._send(400, json.dumps(error).encode())
                    return
                n = int(body.get("n", 1)) if owner.support_n else 1
                choices = []
                for index in range(n):
                    item = owner.next_item(body)
                    if isinstance(item, dict) and "content" not in item:
                        if index > 0:
                            break
                        self._fault(item)
                        return
                    if isinstance(item, dict) and item.get("delay"):
                        time.sleep(item["delay"])
                    content = item["content"] if isinstance(item, dict) else item
                    finish = item.get("finish_reason", "stop") if isinstance(item, dict) else "stop"
                    choices.append({"index": index, "message": {"role": "assistant", "content": content},
                                    "finish_reason": finish})
                prompt_chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
                completion_chars = sum(len(c["message"]["content"]) for c in choices)
                usage = {"prompt_tokens": prompt_chars // 4, "completion_tokens": completion_chars // 4,
                         "total_tokens": (prompt_chars + completion_chars) // 4}
                answer = {"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                          "model": body.get("model", "test"), "choices": choices, "usage": usage}
                self._send(200, json.dumps(answer).encode())

            def _fault(self, item: dict) -> None:
                if item.get("drop"):
                    self.close_connection = True
                    self.connection.close()
                    return
                if "delay" in item:
                    time.sleep(item["delay"])
                    self.close_connection = True
                    return
                if "raw" in item:
                    payload = item["raw"].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status = item.get("status", 500)
                error = {"error": {"message": item.get("message", f"scripted HTTP {status}"), "type": "server_error"}}
                self._send(status, json.dumps(error).encode(), item.get("headers"))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def answer(suggestion: dict, reasoning: str = "scripted") -> str:
    """A well-formed OptoPrime answer."""
    return json.dumps({"reasoning": reasoning, "suggestion": suggestion})
