"""Record every LLM call to JSONL; replay a recording offline, exactly.

A call is keyed by a hash of what decides its answer (model, messages, sampling
settings) and a sample index. Replaying hands out the recorded answers for a key in
the order they were recorded, so a run that asked the same question twice gets the
two recorded answers in turn. A request that is not in the recording is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import defaultdict, deque
from pathlib import Path
from typing import Any


class ReplayMissError(LookupError):
    """A replayed run asked something the recording never saw. Not an LLM failure to work around:
    the replay no longer matches its recording, so the run stops."""


def request_key(request: dict[str, Any], sample_index: int = 0) -> str:
    """A stable key for a request: the hash of its canonical JSON plus the sample index."""
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"{hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:32]}:{sample_index}"


class Recorder:
    """Appends one JSON line per call to ``path`` (flushed and fsynced per call)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, key: str, request: dict, response: dict) -> None:
        line = json.dumps({"key": key, "request": request, "response": response}, ensure_ascii=False)
        with self._lock, open(self.path, "a", encoding="utf-8") as stream:
            stream.write(line + "\n")
            stream.flush()
            os.fsync(stream.fileno())


class Replayer:
    """Serves recorded responses by key, in recorded order."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no LLM recording at {self.path}")
        self._answers: dict[str, deque] = defaultdict(deque)
        with open(self.path, encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    # a run killed mid-write leaves at most one partial last line
                    continue
                if "key" not in entry or "response" not in entry:
                    raise ValueError(f"{self.path}:{number} is not an LLM recording entry")
                self._answers[entry["key"]].append(entry["response"])
        self._lock = threading.Lock()

    def take(self, key: str) -> dict:
        with self._lock:
            answers = self._answers.get(key)
            if not answers:
                raise ReplayMissError(
                    f"the replay no longer matches its recording: {self.path} has no (further) answer for "
                    f"request {key}; a replay needs the same task, settings and code as the recorded run")
            return answers.popleft()
