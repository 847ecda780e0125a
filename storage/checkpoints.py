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
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads on first use: `alexsearch status` sizes the checkpoints without it
    import torch
    from torch import nn


KEYS = ("epoch", "history", "model", "optimizer", "torch_rng", "config")  # what a resumable checkpoint holds


class CheckpointError(ValueError):
    """A checkpoint a trial cannot resume from. The message says why, in one line."""


def _check_tensors(what: str, saved: Any, expected: dict[str, torch.Tensor]) -> None:
    import torch

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
    import torch

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
    import torch

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
    def __init__(self, folder: Path, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.fsync = fsync  # False only to measure what fsync costs (bench/checkpoint_cost.py)

    def path(self, key: int) -> Path:
        return self.folder / f"trial-{key}.pt"

    def save(self, key: int, state: dict[str, Any]) -> Path:
        """Write state to trial-KEY.pt atomically: temp file in the same folder, fsync, os.replace.

        A write that fails (a full disk) raises OSError naming the checkpoint, and leaves no temp file.
        """
        import torch

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
        import torch

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

    def load_resumable(self, key: int, **expected: Any) -> dict[str, Any] | None:
        """The checkpoint if a trial can resume from it; None if there is none. CheckpointError (one line naming
        the file and why) if it cannot be read or does not fit; `expected` are check_resumable's arguments."""
        import torch

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
        if self.folder.is_dir():
            self._remove_partial(key)

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


def snapshot(obj: Any) -> Any:
    """obj with every tensor copied to host memory: the copy no later training step can change."""
    import torch

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

    A write that fails (a full disk) is raised in the training thread by the next `after_epoch` or `flush`, so
    the trial fails and is retried from its last whole checkpoint, as when checkpoints were written in line.
    """

    def __init__(self, store: CheckpointStore, every_s: float) -> None:
        if every_s < 0:
            raise ValueError(f"--checkpoint-every: must be >= 0 seconds, got {every_s}")
        self.store, self.every_s = store, every_s
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None  # of the last write, until the training thread raises it
        self._last = time.monotonic()
        self.written = 0  # checkpoints completed, for tests and benches
        self.skipped = 0  # due but skipped because the previous write was still running

    def start_trial(self) -> None:
        self._last = time.monotonic()

    def load(self, key: int) -> dict[str, Any] | None:
        self.flush()
        return self.store.load(key)

    def load_resumable(self, key: int, **expected: Any) -> dict[str, Any] | None:
        """CheckpointStore.load_resumable, once the write in flight (if any) has finished."""
        self.flush()
        return self.store.load_resumable(key, **expected)

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def after_epoch(self, key: int, state: Callable[[], dict[str, Any]]) -> bool:
        """Start a background write of state() if one is due; True if one was started. Raises the error of
        a write that failed since the last call."""
        if not self.busy():
            self._raise_error()
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
        except Exception as e:  # the last whole checkpoint stays; the training thread raises e (see the class)
            self._error = e

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def flush(self, raise_error: bool = True) -> None:
        """Wait for the write in flight, if any; raise the error of a write that failed, unless raise_error is
        False (a stopping worker: the retry resumes from the last whole checkpoint either way)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if raise_error:
            self._raise_error()
        else:
            self._error = None

    def delete(self, key: int) -> None:
        """Remove key's checkpoint: its trial has finished, so a write of it that failed no longer matters."""
        self.flush(raise_error=False)
        self.store.delete(key)
