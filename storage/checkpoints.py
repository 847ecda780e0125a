"""Per-trial checkpoints, written atomically each epoch so a retried trial resumes where its original died.

A checkpoint is keyed by the retry chain's original trial number, so every retry of trial 7 reads and
writes `trial-7.pt`. Files hold only tensors, numbers, strings, lists and dicts, so they load with
weights_only=True (no pickled code runs on load).

Files of finished chains are swept when a worker starts (`sweep`): a finished trial deletes its own
checkpoint, but a trial that failed for good, a retry closed at the budget, or a kill during a write
(`trial-7.pt.XXXX.tmp`) leaves files behind, and an AlexNet checkpoint with Adam is 279 MB.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

SWEEP_MIN_AGE_S = 60.0  # a sweep leaves younger files alone
_FILE = re.compile(r"trial-(\d+)\.pt(?:\..+\.tmp)?")  # trial-7.pt and its temp files trial-7.pt.XXXX.tmp


class CheckpointStore:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, key: int) -> Path:
        return self.folder / f"trial-{key}.pt"

    def save(self, key: int, state: dict[str, Any]) -> Path:
        """Write state to trial-KEY.pt atomically: temp file in the same folder, fsync, os.replace.

        A write that fails (a full disk) raises OSError naming the checkpoint, and leaves no temp file.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(key)
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except RuntimeError as e:
            Path(tmp).unlink(missing_ok=True)
            # torch.save reports a failed write as "[enforce fail at inline_container.cc] unexpected pos";
            # the OSError it swallowed (e.g. ENOSPC) is the error to report.
            if isinstance(e.__context__, OSError):
                raise OSError(e.__context__.errno, e.__context__.strerror, str(target)) from e
            raise
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise OSError(e.errno, e.strerror, str(target)) from e
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

    def files(self) -> dict[int, list[Path]]:
        """Checkpoints and temp files (left by a kill during a write) in the folder, by key."""
        out: dict[int, list[Path]] = {}
        if not self.folder.is_dir():
            return out
        for p in self.folder.iterdir():
            m = _FILE.fullmatch(p.name)
            if m and p.is_file():
                out.setdefault(int(m.group(1)), []).append(p)
        return out

    def held_bytes(self) -> tuple[int, int]:
        """(files, bytes) the folder's checkpoints and temp files hold."""
        paths = [p for ps in self.files().values() for p in ps]
        return len(paths), sum(_size(p) for p in paths)

    def sweep(self, live: set[int], min_age_s: float = SWEEP_MIN_AGE_S) -> tuple[int, int]:
        """Delete the checkpoints and temp files of every key not in live that are older than min_age_s
        (a file that young may belong to a trial between its failure and its retry's creation).
        Returns (files, bytes) deleted."""
        now = time.time()
        files = freed = 0
        for key, paths in self.files().items():
            if key in live:
                continue
            for p in paths:
                try:
                    st = p.stat()
                    if now - st.st_mtime < min_age_s:
                        continue
                    p.unlink()
                except FileNotFoundError:  # another worker swept it first
                    continue
                files, freed = files + 1, freed + st.st_size
        return files, freed


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return 0
