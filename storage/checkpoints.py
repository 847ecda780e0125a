"""Per-trial checkpoints, so a retried trial resumes where its original died.

A checkpoint is keyed by the retry chain's original trial number, so every retry of trial 7 reads and
writes `trial-7.pt`. Files hold only tensors, numbers, strings, lists and dicts, so they load with
weights_only=True (no pickled code runs on load).

Writes are atomic (temp file in the same folder, fsync, os.replace, fsync of the folder): `trial-7.pt` is
always the last checkpoint that was written whole, and a write killed half-way leaves only a temp file,
which the next load or delete of that key removes. CheckpointWriter takes the writing off the training
path: after an epoch it copies the state off the device (on CPU, a clone) and a background thread does the
rest while the next epoch trains, at most once every `every_s` seconds.

fsync: an AlexNet + Adam checkpoint is ~280 MB, and its fsync alone took 0.1-0.6 s here (bench/checkpoint_cost.py
prints it). On the training thread that was a real share of a 1 s epoch; in the writer thread it costs the
training nothing measurable, so it stays: after a power cut, `trial-K.pt` is the last checkpoint whose write
completed, never a torn file. Without it, a renamed file whose data had not reached the disk could read
back empty after the cut, and the trial would start over.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class CheckpointStore:
    def __init__(self, folder: Path, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.fsync = fsync  # False only to measure what fsync costs (bench/checkpoint_cost.py)

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
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.fsync:
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the rename itself durable
            finally:
                os.close(dir_fd)
        return target

    def _remove_partial(self, key: int) -> None:
        """Temp files of writes that were killed half-way (only one worker at a time runs a retry chain)."""
        for tmp in self.folder.glob(f"{self.path(key).name}.*.tmp"):
            tmp.unlink(missing_ok=True)

    def load(self, key: int) -> dict[str, Any] | None:
        """The checkpoint, or None if there is none or it cannot be read (then the trial starts over)."""
        if self.folder.is_dir():
            self._remove_partial(key)
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
        if self.folder.is_dir():
            self._remove_partial(key)


def snapshot(obj: Any) -> Any:
    """obj with every tensor copied to host memory: the copy no later training step can change."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        return t.to("cpu", copy=True) if t.device.type != "cpu" else t.clone()
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """A trial's checkpoints, written from a background thread at most once every `every_s` seconds.

    Call `start_trial()` when a trial starts and `after_epoch(key, state)` after each of its epochs: once
    `every_s` seconds have passed since the trial started or since the last checkpoint, the state is copied
    off the device (the only part the training waits for) and written by a thread. every_s=0 checkpoints every
    epoch. If the previous write is still running when the next is due, that epoch is skipped, so training
    never waits for the disk and at most one copy of the state is held. `delete` and `flush` wait for a write
    in flight, so a finished trial's file is not written again after it was deleted.
    """

    def __init__(self, store: CheckpointStore, every_s: float, log: Callable[[str], None] | None = None) -> None:
        if every_s < 0:
            raise ValueError(f"--checkpoint-every: must be >= 0 seconds, got {every_s}")
        self.store, self.every_s = store, every_s
        self.log = log or (lambda line: warnings.warn(line, stacklevel=3))
        self._thread: threading.Thread | None = None
        self._last = time.monotonic()
        self.written = 0  # checkpoints completed, for tests and benches
        self.skipped = 0  # due but skipped because the previous write was still running

    def start_trial(self) -> None:
        self._last = time.monotonic()

    def load(self, key: int) -> dict[str, Any] | None:
        self.flush()
        return self.store.load(key)

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def after_epoch(self, key: int, state: Callable[[], dict[str, Any]]) -> bool:
        """Start a background write of state() if one is due; True if one was started."""
        if time.monotonic() - self._last < self.every_s:
            return False
        if self.busy():
            self.skipped += 1
            return False
        copy = snapshot(state())
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._write, args=(key, copy), name=f"checkpoint-{key}")
        self._thread.start()
        return True

    def _write(self, key: int, state: dict[str, Any]) -> None:
        try:
            self.store.save(key, state)
            self.written += 1
        except Exception as e:  # a full disk must not end the training; the last whole checkpoint stays
            self.log(f"checkpoint of trial {key} not written: {type(e).__name__}: {e}")

    def flush(self) -> None:
        """Wait for the write in flight, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def delete(self, key: int) -> None:
        self.flush()
        self.store.delete(key)
