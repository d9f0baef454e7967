"""Run folders: every file a run writes, written so that a kill at any moment loses nothing.

JSON files are replaced atomically (temporary file, fsync, rename); the log is
appended one fsynced line per iteration, and a partial last line (a kill during the
write) is ignored and trimmed on resume.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from trace_control.trace import atomic_write_text

CONFIG = "config.json"
LOG = "log.jsonl"
STATE = "state.json"
RESULTS = "results.json"
LLM_CALLS = "llm_calls.jsonl"
BEST = "best_controller.py"
LAST = "last_controller.py"
CURVE = "learning_curve.png"
PROMPTS = "prompts"


class RunFolderError(ValueError):
    """A run folder that cannot be used safely; the message says why."""


class RunFolder:
    """The folder of one training run. It is written only inside itself: a symbolic link in it
    (someone else's run folder, maybe) is refused, never written through."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check_links(self) -> None:
        """Refuse a folder holding symbolic links (they could lead writes outside it)."""
        links = sorted(str(entry.relative_to(self.path)) for entry in self.path.rglob("*") if entry.is_symlink())
        if links:
            raise RunFolderError(f"{self.path} holds symbolic links ({', '.join(links[:3])}); a run folder is "
                                 "written in place, so remove them (or copy the folder without them)")

    def writable(self, name: str) -> Path:
        """The path of ``name`` for writing; RunFolderError when it (or its folder) leads outside the run."""
        path = self.path / name
        root = self.path.resolve()
        folder = path.parent.resolve()
        if path.is_symlink() or (folder != root and root not in folder.parents):
            raise RunFolderError(f"{path} leads outside the run folder {self.path} (a symbolic link); refusing to "
                                 "write through it")
        return path

    @classmethod
    def create(cls, runs_dir: str | Path, task: str, label: str, name: str | None = None) -> RunFolder:
        base = name or f"{task}-{label}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = Path(runs_dir) / base
        suffix = 1
        while path.exists():
            suffix += 1
            path = Path(runs_dir) / f"{base}-{suffix}"
        path.mkdir(parents=True)
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.writable(name), json.dumps(data, indent=2, default=str) + "\n")

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text(encoding="utf-8"))

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.writable(name), text)

    def append_log(self, record: dict) -> None:
        with open(self.writable(LOG), "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, default=str) + "\n")
            stream.flush()
            os.fsync(stream.fileno())

    def read_log(self) -> list[dict]:
        """The complete records of the log (a partial last line is skipped)."""
        path = self.file(LOG)
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def trim_log(self, last_iteration: int) -> list[dict]:
        """Keep the records up to ``last_iteration`` (rewritten atomically); return them."""
        kept = [r for r in self.read_log() if r.get("iteration", -1) <= last_iteration]
        self.write_text(LOG, "".join(json.dumps(r, default=str) + "\n" for r in kept))
        return kept

    def trim_lines(self, name: str, count: int) -> None:
        """Keep the first ``count`` complete lines of a JSONL file (atomically)."""
        path = self.file(name)
        if not path.is_file():
            return
        lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if line.endswith("\n")]
        self.write_text(name, "".join(lines[:count]))

    def count_lines(self, name: str) -> int:
        path = self.file(name)
        if not path.is_file():
            return 0
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if line.endswith("\n"))
