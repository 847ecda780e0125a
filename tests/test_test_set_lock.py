"""The test-set lock: only `alexsearch final` opens CIFAR-10's test_batch.

Every file opened through Python (builtins.open, io.open, so pathlib too) and every batch read by
model.cifar10.read_batch is recorded while the real commands run in-process. The search side also runs on
a copy of the data with no test_batch at all, so it cannot have needed it. A positive control shows the
recorder does see `final` open it.
"""

from __future__ import annotations

import builtins
import io
import shutil
from pathlib import Path

import pytest

from model import cifar10
from search.cli import main

SPACE = """task = "alexnet-cifar10"
[params]
lr = { choices = [1e-3, 3e-4] }
[fixed]
optimizer = "adam"
batch_size = 100
"""


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Paths of every file opened from Python and every CIFAR-10 batch read, in order."""
    seen: list[str] = []
    real_open, real_read = builtins.open, cifar10.read_batch

    def spy_open(file, *args, **kwargs):
        seen.append(str(file))
        return real_open(file, *args, **kwargs)

    def spy_read(path):
        seen.append(str(path))
        return real_read(path)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(cifar10, "read_batch", spy_read)
    return seen


def touched_test_batch(paths: list[str]) -> list[str]:
    return [p for p in paths if Path(p).name == cifar10.TEST_FILE]


@pytest.fixture(scope="module")
def no_test_data(tiny_data, tmp_path_factory) -> Path:
    """The tiny data without its test batch."""
    root = tmp_path_factory.mktemp("locked")
    shutil.copytree(tiny_data / cifar10.FOLDER, root / cifar10.FOLDER)
    (root / cifar10.FOLDER / cifar10.TEST_FILE).unlink()
    return root


@pytest.mark.slow
def test_search_export_status_and_report_never_open_the_test_batch(no_test_data, tiny_data, tmp_path, opened, capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    (tmp_path / "space.toml").write_text(SPACE)
    runs = [
        [
            "search",
            "--storage",
            url,
            "--data",
            str(no_test_data),
            "--space",
            str(tmp_path / "space.toml"),
            "--trials",
            "1",
            "--epochs",
            "1",
            "--train-size",
            "20",
            "--val-size",
            "10",
            "--device",
            "cpu",
            "--sampler",
            "grid",
        ],
        ["export", "--storage", url, "--out", str(tmp_path / "best.json"), "--top", "2"],
        ["status", "--storage", url],
        ["report", "--storage", url, "--out", str(tmp_path / "report")],
    ]
    for argv in runs:
        opened.clear()
        assert main(argv) == 0, (argv, capsys.readouterr().err)
        assert touched_test_batch(opened) == [], argv[0]
        if argv[0] == "search":  # the recorder works: it saw the training batches
            assert any(Path(p).name == "data_batch_1" for p in opened)

    # Positive control: the exported config's final run opens the test batch (of the full data).
    opened.clear()
    assert (
        main(
            [
                "final",
                "--config",
                str(tmp_path / "best.json"),
                "--data",
                str(tiny_data),
                "--seeds",
                "1",
                "--train-size",
                "10",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "final"),
            ]
        )
        == 0
    )
    assert touched_test_batch(opened), "the recorder missed final's read of test_batch"


def test_final_needs_the_test_batch(no_test_data, tmp_path, capsys):
    """Without test_batch, final stops with a one-line error before training, where search runs fine."""
    cfg = tmp_path / "hand.json"
    cfg.write_text(HAND_WRITTEN.replace("ROOT", str(no_test_data)))
    assert main(["final", "--config", str(cfg), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and cifar10.TEST_FILE in err and err.count("\n") == 1


# A config written by hand: the report's own (Adam, lr 1e-3, batch 100, no batch norm, 10 epochs), no study.
HAND_WRITTEN = """{
  "trial_config": {
    "task": "alexnet-cifar10",
    "model": {"batch_norm": false, "dropout": 0.5, "num_classes": 10},
    "train": {"optimizer": "adam", "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 100,
              "epochs": 10, "seed": 0, "augment": false, "precision": "auto"},
    "data": {"root": "ROOT", "download": false, "val_size": null, "train_size": null, "split_seed": 0},
    "format_version": 1
  },
  "provenance": {"storage": null, "study": null, "trial": null, "rank": null, "val_acc": null,
                 "best_epoch": null, "search_epochs": null, "device": null, "exported_at": null},
  "versions": {},
  "format_version": 1
}
"""
