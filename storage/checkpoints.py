"""Per-trial checkpoints, written atomically each epoch so a retried trial resumes where its original died.

A checkpoint is keyed by the retry chain's original trial number, so every retry of trial 7 reads and
writes `trial-7.pt`. Files hold only tensors, numbers, strings, lists and dicts, so they load with
weights_only=True (no pickled code runs on load).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch


class CheckpointStore:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, key: int) -> Path:
        return self.folder / f"trial-{key}.pt"

    def save(self, key: int, state: dict[str, Any]) -> Path:
        """Write state to trial-KEY.pt atomically: temp file in the same folder, fsync, os.replace."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(key)
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
        return target

    def load(self, key: int) -> dict[str, Any] | None:
        """The checkpoint, or None if there is none or it cannot be read (then the trial starts over)."""
        target = self.path(key)
        if not target.is_file():
            return None
        try:
            return torch.load(target, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file: retraining beats crashing the worker
            warnings.warn(f"ignoring unreadable checkpoint {target}: {type(e).__name__}: {e}", stacklevel=2)
            return None

    def delete(self, key: int) -> None:
        self.path(key).unlink(missing_ok=True)
