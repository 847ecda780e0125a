"""Checkpoints written from a background thread: the state is copied first, writes are spaced, a finished
trial's file is not written again, and a worker killed in the middle of a write resumes from the last whole one."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from storage.artifacts import checkpoint_dir
from storage.checkpoints import CheckpointStore, CheckpointWriter
from tests.helpers import ALEXSEARCH, ENV, run_cli
from tests.test_workers import load


def _worker_cmd(url: str, art: Path, data: Path, *extra: str) -> list[str]:
    """AlexNet on tiny CIFAR-10: its checkpoint (with Adam state, ~280 MB) takes long enough to write that a kill
    can land inside the write."""
    return [
        *(ALEXSEARCH, *extra, "--storage", url, "--study", "crash", "--data", str(data), "--trials", "1"),
        *("--epochs", "4", "--train-size", "200", "--val-size", "100", "--device", "cpu", "--pruner", "none"),
        *("--patience", "0", "--heartbeat-interval", "1", "--grace-period", "3", "--artifacts", str(art)),
        *("--checkpoint-every", "0"),
    ]


def test_the_state_is_copied_before_training_goes_on(tmp_path):
    writer = CheckpointWriter(CheckpointStore(tmp_path), every_s=0)
    weights = torch.zeros(1000)
    assert writer.after_epoch(3, lambda: {"epoch": 1, "model": {"w": weights}})
    weights.add_(1)  # the next optimizer step, while the thread may still be writing
    writer.flush()
    assert torch.equal(writer.load(3)["model"]["w"], torch.zeros(1000))


def test_every_epoch_with_zero_and_none_within_the_interval(tmp_path):
    every_epoch = CheckpointWriter(CheckpointStore(tmp_path / "a"), every_s=0)
    hourly = CheckpointWriter(CheckpointStore(tmp_path / "b"), every_s=3600)
    for epoch in range(1, 4):
        every_epoch.flush()
        assert every_epoch.after_epoch(1, lambda e=epoch: {"epoch": e})
        assert not hourly.after_epoch(1, lambda e=epoch: {"epoch": e})
    every_epoch.flush()
    assert every_epoch.written == 3 and every_epoch.load(1)["epoch"] == 3
    assert hourly.written == 0 and hourly.load(1) is None


def test_a_due_checkpoint_is_skipped_while_the_last_one_is_still_written(tmp_path):
    writer = CheckpointWriter(CheckpointStore(tmp_path), every_s=0)
    big = {"w": torch.zeros(50_000_000)}  # 200 MB: still being written when the next epoch ends
    assert writer.after_epoch(1, lambda: big)
    assert writer.busy() and not writer.after_epoch(1, lambda: big)
    assert writer.skipped == 1
    writer.flush()


def test_delete_waits_for_the_write_in_flight(tmp_path):
    writer = CheckpointWriter(CheckpointStore(tmp_path), every_s=0)
    writer.after_epoch(5, lambda: {"w": torch.zeros(10_000_000)})
    writer.delete(5)  # the trial finished while its last checkpoint was being written
    time.sleep(0.2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigkill_during_a_background_write_then_resume(db_url, tmp_path, tiny_data, capsys):
    art = tmp_path / "art"
    folder = checkpoint_dir(art, "crash")  # a readable slug plus a hash of the name
    ckpt = folder / "trial-0.pt"
    worker = subprocess.Popen(
        _worker_cmd(db_url, art, tiny_data, "worker", "--worker-index", "0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    killed_mid_write = False
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and worker.poll() is None:
            # a whole checkpoint on disk and the next one being written (AlexNet + Adam: ~280 MB, 0.3-1 s)
            if ckpt.exists() and list(folder.glob("trial-0.pt.*.tmp")):
                worker.send_signal(signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.005)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert killed_mid_write, "the worker finished before a second checkpoint was being written"
    assert list(folder.glob("trial-0.pt.*.tmp"))  # the kill did land inside the write
    saved_epoch = torch.load(ckpt, weights_only=True)["epoch"]  # the previous checkpoint is whole
    assert 1 <= saved_epoch < 4
    assert load(db_url, "crash").get_trials()[0].state == TrialState.RUNNING

    time.sleep(3.5)  # past the grace period
    capsys.readouterr()
    code = run_cli(_worker_cmd(db_url, art, tiny_data, "search", "--no-estimate")[1:])  # the resume, in this process
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert f"resuming trial 0 after epoch {saved_epoch}" in out + err
    trials = load(db_url, "crash").get_trials()
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert sorted(retried[0].intermediate_values) == [1, 2, 3, 4]
    assert not list(folder.glob("trial-0.pt*"))  # no checkpoint and no half-written temp file left


def test_a_failed_write_is_raised_by_the_next_epoch_and_by_flush(tmp_path):
    folder = tmp_path / "ckpt"
    folder.write_text("a file where the checkpoint folder should be")  # every background write fails
    writer = CheckpointWriter(CheckpointStore(folder), every_s=0)
    assert writer.after_epoch(1, lambda: {"epoch": 1})
    while writer.busy():
        time.sleep(0.01)
    with pytest.raises(OSError):
        writer.after_epoch(1, lambda: {"epoch": 2})  # the trial fails here, as with a save in line
    assert writer.after_epoch(1, lambda: {"epoch": 3})  # raised once: the retry's first epoch tries again
    with pytest.raises(OSError):
        writer.flush()
    writer.after_epoch(1, lambda: {"epoch": 4})
    writer.flush(raise_error=False)  # a stopping worker: its trial's retry resumes from the last whole one
    folder.unlink()
    writer.after_epoch(1, lambda: {"epoch": 5})
    writer.delete(1)  # the trial finished: no file is left, and nothing is raised
    assert not folder.exists() or list(folder.iterdir()) == []
