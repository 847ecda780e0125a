"""`alexsearch final`: retrain an exported config, test once per seed, write results, record them on the study;
and every bad config file gets one line, exit 2."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from model.alexnet import AlexNet, AlexNetConfig
from model.tasks import DataConfig, get_task
from model.train import TrainConfig, Trainer
from search import final
from search.cli import main
from search.export import load_exported
from search.trials.trial_config import TrialConfig, versions

SEED = 5  # the config's seed: the final run uses 5, 6, ...
FAST = ["--device", "cpu", "--train-size", "20"]  # one batch per epoch


@pytest.fixture(scope="module")
def exported(tiny_data, tmp_path_factory) -> tuple[str, Path]:
    """A study with one complete trial (best at epoch 1 of 3), exported through the CLI: (storage URL, best.json)."""
    folder = tmp_path_factory.mktemp("final")
    url = f"sqlite:///{folder / 'study.db'}"
    config = TrialConfig(
        "alexnet-cifar10",
        AlexNetConfig().to_dict(),
        TrainConfig(optimizer="adam", lr=1e-3, batch_size=100, epochs=3, seed=SEED),
        DataConfig(root=str(tiny_data), val_size=10, train_size=20),
    )
    study = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            value=0.5,
            params={"lr": 1e-3},
            distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)},
            user_attrs={
                "config": config.to_dict(),
                "best_epoch": 1,
                "seed": SEED,
                "versions": versions(),
                "device": "cpu",
            },
        )
    )
    assert main(["export", "--storage", url, "--out", str(folder / "best.json")]) == 0
    return url, folder / "best.json"


@pytest.mark.slow
def test_final_two_seeds_writes_results_and_records_them_on_the_study(exported, tmp_path, monkeypatch, capsys):
    url, best = exported
    calls = {"evaluate": 0, "predict": 0}
    real_predict = Trainer.predict

    def count_evaluate(self):
        calls["evaluate"] += 1
        raise AssertionError("the final run must not evaluate the test set each epoch")

    def count_predict(self):
        calls["predict"] += 1
        return real_predict(self)

    monkeypatch.setattr(Trainer, "evaluate", count_evaluate)
    monkeypatch.setattr(Trainer, "predict", count_predict)
    out = tmp_path / "out"
    assert main(["final", "--config", str(best), "--seeds", "2", "--out", str(out), *FAST]) == 0
    assert calls == {"evaluate": 0, "predict": 2}  # the test set, once per seed
    assert "test accuracy" in capsys.readouterr().out

    m = json.loads((out / "metrics.json").read_text())
    accs = [m["test_acc_per_seed"][str(s)] for s in (SEED, SEED + 1)]
    assert m["seeds"] == [SEED, SEED + 1] and m["epochs"] == 1
    assert m["test_acc_mean"] == pytest.approx(statistics.fmean(accs))
    assert m["test_acc_std"] == pytest.approx(statistics.stdev(accs))
    assert (m["train_images"], m["test_images"]) == (20, 100)
    assert m["classes"][0] == "airplane" and list(m["per_class_acc"]) == m["classes"]
    cm = torch.tensor(m["confusion_matrix"])
    assert cm.shape == (10, 10) and int(cm.sum()) == 2 * 100
    for seed_result, acc in zip(m["per_seed"], accs, strict=True):
        seed_cm = torch.tensor(seed_result["confusion_matrix"])
        assert int(seed_cm.diag().sum()) / 100 == pytest.approx(acc) == seed_result["test_acc"]
        assert [h["epoch"] for h in seed_result["history"]] == [1] and "val_acc" not in seed_result["history"][0]
    assert m["study"] == "tiny" and m["trial"] == 0 and m["config"] == load_exported(best).to_dict()

    names = {p.name for p in out.iterdir()}
    assert names == {
        "metrics.json",
        "config.json",
        "model-seed5.pt",
        "model-seed6.pt",
        "confusion_matrix.png",
        "learning_curve.png",
    }
    for png in ("confusion_matrix.png", "learning_curve.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    AlexNet(AlexNetConfig()).load_state_dict(torch.load(out / "model-seed5.pt", weights_only=True))

    study = optuna.load_study(study_name="tiny", storage=url)
    # --train-size (FAST) makes this a smoke run: recorded apart and marked, no study artifacts
    # (tests/test_final_smoke.py records a full run).
    assert "final_result" not in study.user_attrs
    result = study.user_attrs["final_smoke_result"]
    assert result["smoke"] is True and result["train_size"] == 20
    assert result["test_acc_mean"] == pytest.approx(m["test_acc_mean"]) and result["out_dir"] == str(out.resolve())
    assert optuna.artifacts.get_all_artifact_meta(study) == []

    # The same folder twice would overwrite a finished run: refused before anything trains.
    assert main(["final", "--config", str(best), "--out", str(out), *FAST]) == 2
    assert "already holds metrics.json" in capsys.readouterr().err


@pytest.mark.slow
def test_unreachable_study_still_writes_local_results(exported, tmp_path, capsys):
    _, best = exported
    data = json.loads(best.read_text())
    data["provenance"]["storage"] = f"sqlite:///{tmp_path / 'gone.db'}"
    cfg = tmp_path / "moved.json"
    cfg.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert main(["final", "--config", str(cfg), "--seeds", "1", "--out", str(out), *FAST]) == 0
    err = capsys.readouterr().err
    assert "cannot open study 'tiny'" in err and "results are written locally only" in err
    assert (out / "metrics.json").exists() and not (tmp_path / "gone.db").exists()


def test_final_data_is_all_training_images_and_the_test_set(exported, tiny_data):
    cfg = load_exported(exported[1])
    assert cfg.trial_config.data.train_size == 20  # the search's cap ...
    data_config = final.final_data_config(cfg, None, False, None)
    assert data_config.train_size is None and data_config.root == str(tiny_data)  # ... is not the final run's
    data = get_task("alexnet-cifar10").load_final_data(data_config)
    assert (len(data.train), len(data.eval), data.eval_name) == (400, 100, "test")


def edit(data: dict, path: str, value: object) -> None:
    """Set (or delete, value=DELETE) the key at a dotted path."""
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    if value is DELETE:
        del data[last]
    else:
        data[last] = value


DELETE = object()
BAD = [
    ("trial_config.train.lr", DELETE, "trial_config.train: missing key 'lr'"),
    ("trial_config.model.batch_norm", DELETE, "trial_config.model: missing key 'batch_norm'"),
    ("provenance", DELETE, "missing key 'provenance'"),
    ("trial_config.train.lr", -1.0, "trial_config.train: lr must be a positive number, got -1.0"),
    ("trial_config.train.batch_size", "big", "error: {cfg}: trial_config.train.batch_size: expected an integer"),
    ("trial_config.train.optimizer", "rmsprop", "trial_config.train.optimizer: must be one of 'adam', 'sgd'"),
    ("trial_config.model.dropout", 1.5, "trial_config.model: dropout must be in [0, 1), got 1.5"),
    ("trial_config.task", "resnet", "trial_config: task: unknown task 'resnet'"),
    ("provenance.trial", "three", "provenance.trial: expected"),
    ("trial_config.train.lrr", 0.1, "trial_config.train: unknown key 'lrr'"),
    ("comment", "hi", "unknown key 'comment'"),
    ("format_version", 2, "format_version: this file is format 2; this alexsearch reads format 1"),
    ("trial_config.format_version", 2, "trial_config.format_version: this config is format 2"),
]


@pytest.mark.parametrize("path, value, fragment", BAD, ids=[f"{p}={v!r}" for p, v, _ in BAD])
def test_bad_config_file_is_one_line_exit_2(path, value, fragment, exported, tmp_path, capsys):
    data = json.loads(exported[1].read_text())
    edit(data, path, value)
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps(data))
    assert_refused(cfg, fragment.format(cfg=cfg), tmp_path, capsys)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "not valid JSON"),
        ("[]", "holds a list; an export file holds one config"),
        ("42", "expected a table of ExportedConfig fields"),
        (None, "--config: no file at"),
    ],
    ids=["not-json", "list", "number", "missing-file"],
)
def test_unreadable_config_file_is_one_line_exit_2(text, fragment, tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    if text is not None:
        cfg.write_text(text)
    assert_refused(cfg, fragment, tmp_path, capsys)


def assert_refused(cfg: Path, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["final", "--config", str(cfg), "--out", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alexsearch final: error: ") and fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
