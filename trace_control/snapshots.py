"""A run folder as files in memory, to send between machines while the run goes on.

A copy of a run is ``{relative path: bytes}``. A copy taken right after a checkpoint is
consistent: resuming trims the log and the LLM recording back to ``state.json``, so files
newer than the checkpoint do no harm, and :func:`write_files` writes ``state.json`` and
``results.json`` last so that a copy interrupted half-way still resumes correctly.
"""

from __future__ import annotations

import json
from pathlib import Path

from trace_control.runs import RESULTS, STATE

LAST_WRITTEN = (STATE, RESULTS)


def changed_files(folder: Path, seen: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """The files of ``folder`` that changed since ``seen`` (updated in place) as {relative path: bytes};
    temporary files of writes under way are skipped."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        status = path.stat()
        name = path.relative_to(folder).as_posix()
        if seen.get(name) != (status.st_size, status.st_mtime_ns):
            seen[name] = (status.st_size, status.st_mtime_ns)
            files[name] = path.read_bytes()
    return files


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write a run's files into ``folder``, each one whole, the checkpoint and results last."""
    for name in sorted(files, key=lambda name: (LAST_WRITTEN.index(name) + 1 if name in LAST_WRITTEN else 0, name)):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.part")
        partial.write_bytes(files[name])
        partial.replace(path)


def checkpoint_iteration(files: dict[str, bytes]) -> int:
    """The last finished iteration a copy of a run holds (-1: none)."""
    if STATE not in files:
        return -1
    return int(json.loads(files[STATE]).get("iteration", -1))


class RunStore:
    """The newest checkpoint of every run under way, as files, versioned so the caller takes only what is new."""

    def __init__(self) -> None:
        self.version = 0
        self.runs: dict[str, dict[str, tuple[int, bytes]]] = {}

    def put(self, name: str, files: dict[str, bytes]) -> None:
        self.version += 1
        run = self.runs.setdefault(name, {})
        for path, data in files.items():
            run[path] = (self.version, data)

    def files(self, name: str) -> dict[str, bytes]:
        return {path: data for path, (_, data) in self.runs.get(name, {}).items()}

    def changes(self, since: int) -> tuple[int, dict[str, dict[str, bytes]]]:
        """(the current version, {run: files changed after version ``since``})."""
        changed = {name: {path: data for path, (version, data) in run.items() if version > since}
                   for name, run in self.runs.items()}
        return self.version, {name: files for name, files in changed.items() if files}

    def forget(self, name: str) -> None:
        self.runs.pop(name, None)
