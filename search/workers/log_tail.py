"""New whole lines from a set of growing log files (the Slurm array tasks' output), as `tail -f` would give them.

Each file's offset is remembered; only complete lines (ending in a newline) are returned, so a line a task is
still writing waits for its end. A requeued task appends to its file (sbatch --open-mode=append) and is read on
from where it was; a file that shrank (rewritten) is read again from its start.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path


class LogTail:
    def __init__(
        self, folder: Path, pattern: str, label: Callable[[Path], str] = lambda p: "", from_end: bool = False
    ) -> None:
        """Files folder/pattern (a glob); label(path) goes before each of its lines (e.g. "[task 0] ").
        from_end: skip what the files already hold (a watcher re-attaching), up to their last whole line."""
        self.folder, self.pattern, self.label = folder, pattern, label
        self.offsets: dict[Path, int] = {}
        if from_end:
            for path in self._paths():
                data = _read(path, 0)
                self.offsets[path] = data.rfind(b"\n") + 1

    def _paths(self) -> list[Path]:
        return sorted(self.folder.glob(self.pattern), key=lambda p: (len(p.name), p.name))

    def lines(self) -> list[str]:
        """The whole lines written since the last call, file by file."""
        out = []
        for path in self._paths():
            offset = self.offsets.get(path, 0)
            try:
                if path.stat().st_size < offset:
                    offset = 0
            except OSError:
                continue
            data = _read(path, offset)
            end = data.rfind(b"\n") + 1
            if end == 0:
                continue
            self.offsets[path] = offset + end
            label = self.label(path)
            out += [label + line.rstrip("\r") for line in data[: end - 1].decode(errors="replace").split("\n")]
        return out


def _read(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except OSError:  # not there yet, or gone
        return b""


def array_task_label(path: Path) -> str:
    """'[task 3] ' for a Slurm array task's output file NAME-JOB_3.out."""
    m = re.search(r"_(\d+)\.out$", path.name)
    return f"[task {m.group(1)}] " if m else ""
