"""Per-trial checkpoints, written atomically each epoch so a retried trial resumes where its original died.

A checkpoint is keyed by the retry chain's original trial number, so every retry of trial 7 reads and
writes `trial-7.pt`. Files hold only tensors, numbers, strings, lists and dicts, so they load with
weights_only=True (no pickled code runs on load).

A checkpoint that loads is still checked before a trial resumes from it (`load_resumable`): a torn write
that happens to unpickle, a file of another trial or study, or a hand-made one would otherwise crash the
worker inside load_state_dict, or resume from an epoch the trial never reached.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

KEYS = ("epoch", "history", "model", "optimizer", "torch_rng", "config")  # what a resumable checkpoint holds


class CheckpointError(ValueError):
    """A checkpoint a trial cannot resume from. The message says why, in one line."""


def _check_tensors(what: str, saved: Any, expected: dict[str, torch.Tensor]) -> None:
    if not isinstance(saved, dict):
        raise CheckpointError(f"{what} is a {type(saved).__name__}, not a state dict")
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{what} has other entries than the model being resumed "
            f"({'missing ' + missing[0] if missing else 'unexpected ' + extra[0]})"
        )
    for name, ref in expected.items():
        t = saved[name]
        if not isinstance(t, torch.Tensor) or t.shape != ref.shape or t.dtype != ref.dtype:
            got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise CheckpointError(f"{what}.{name} is {got}, expected {tuple(ref.shape)} {ref.dtype}")


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer) -> None:
    """Same parameter groups, with the same parameters; per-parameter state (Adam's moments, SGD's momentum)
    shaped like its parameter, or a scalar (Adam's step)."""
    ref = optimizer.state_dict()
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("param_groups"), list)
        or not isinstance(saved.get("state"), dict)
    ):
        raise CheckpointError("optimizer is not an optimizer state dict")
    if len(saved["param_groups"]) != len(ref["param_groups"]):
        raise CheckpointError(
            f"optimizer has {len(saved['param_groups'])} parameter groups, expected {len(ref['param_groups'])}"
        )
    shapes: dict[Any, torch.Size] = {}  # parameter id in the state dict -> its shape
    for group, ref_group, params in zip(
        saved["param_groups"], ref["param_groups"], optimizer.param_groups, strict=True
    ):
        if not isinstance(group, dict) or set(group) != set(ref_group) or group["params"] != ref_group["params"]:
            raise CheckpointError("optimizer's parameter groups differ from the optimizer being resumed")
        shapes.update(zip(ref_group["params"], (p.shape for p in params["params"]), strict=True))
    for pid, state in saved["state"].items():
        if pid not in shapes or not isinstance(state, dict):
            raise CheckpointError(f"optimizer holds state for parameter {pid!r}, which the model does not have")
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.numel() != 1 and value.shape != shapes[pid]:
                raise CheckpointError(
                    f"optimizer state {key} of parameter {pid} is {tuple(value.shape)}, expected {tuple(shapes[pid])}"
                )


def _check_history(history: Any, epoch: int, keys: Sequence[str]) -> None:
    if not isinstance(history, list) or len(history) != epoch:
        raise CheckpointError(f"history does not hold one entry for each of its {epoch} epochs")
    for i, entry in enumerate(history, start=1):
        if not isinstance(entry, dict) or entry.get("epoch") != i:
            raise CheckpointError(f"history entry {i} is not the stats of epoch {i}")
        for key in keys:
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CheckpointError(f"history entry {i} has no number {key!r}")


def check_resumable(
    state: Any,
    *,
    config: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    history_keys: Sequence[str] = (),
) -> None:
    """Raise CheckpointError unless state is a checkpoint of this config that model and optimizer can load.

    epochs: the config's epochs; the checkpoint's epoch must be 1..epochs (epochs: it died after its last
    epoch, before the trial was told complete; resuming it trains nothing and only reports).
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"it holds a {type(state).__name__}, not a checkpoint")
    missing = [k for k in KEYS if k not in state]
    if missing:
        raise CheckpointError(f"missing key {missing[0]!r}")
    if state["config"] != config:
        raise CheckpointError("it was saved with another config")
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= epochs:
        raise CheckpointError(f"its epoch is {epoch!r}; a trial of {epochs} epochs checkpoints epochs 1..{epochs}")
    _check_history(state["history"], epoch, history_keys)
    _check_tensors("model", state["model"], model.state_dict())
    _check_optimizer(state["optimizer"], optimizer)
    _check_tensors("torch_rng", {"state": state["torch_rng"]}, {"state": torch.get_rng_state()})


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

    def load_resumable(self, key: int, **expected: Any) -> dict[str, Any] | None:
        """The checkpoint if a trial can resume from it; None if there is none. CheckpointError (one line naming
        the file and why) if it cannot be read or does not fit; `expected` are check_resumable's arguments."""
        target = self.path(key)
        if not target.is_file():
            return None
        try:
            state = torch.load(target, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file
            text = str(e).strip()
            raise CheckpointError(
                f"{target} is unreadable ({type(e).__name__}: {text.splitlines()[0] if text else ''})"
            ) from None
        try:
            check_resumable(state, **expected)
        except CheckpointError as e:
            raise CheckpointError(f"{target}: {e}") from None
        return state

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
