"""A `final --train-size N` smoke run never replaces the study's final result nor adds study artifacts; the
weights' input normalisation is in metrics.json; the study's value is named val_acc (issue 12, item 4)."""

from __future__ import annotations

import json

import optuna

from search.cli import main
from storage.study import open_storage

FAST = ["--task", "mlp-synth", "--epochs", "1", "--train-size", "2000", "--val-size", "500", "--device", "cpu"]


def test_a_smoke_final_run_is_recorded_apart_and_leaves_the_full_result(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["search", "--storage", url, "--study", "s", "--trials", "1", *FAST]) == 0
    study = optuna.load_study(study_name="s", storage=open_storage(url, create=False))
    assert study.metric_names == ["val_acc"]  # the dashboard's label for the value

    assert main(["export", "--storage", url, "--out", str(tmp_path / "best.json")]) == 0
    full = ["final", "--config", str(tmp_path / "best.json"), "--seeds", "1", "--device", "cpu"]
    assert main([*full, "--out", str(tmp_path / "full")]) == 0
    recorded = study.user_attrs["final_result"]
    artifacts = sorted(m.artifact_id for m in optuna.artifacts.get_all_artifact_meta(study))
    assert set(recorded["artifacts"].values()) <= set(artifacts) and recorded["train_images"] == 60_000

    assert main([*full, "--train-size", "500", "--out", str(tmp_path / "smoke")]) == 0
    study = optuna.load_study(study_name="s", storage=open_storage(url, create=False))
    assert study.user_attrs["final_result"] == recorded  # untouched
    assert sorted(m.artifact_id for m in optuna.artifacts.get_all_artifact_meta(study)) == artifacts
    smoke = study.user_attrs["final_smoke_result"]
    assert smoke["smoke"] is True and smoke["train_size"] == 500 and smoke["train_images"] == 500

    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["input_normalisation"]["formula"].startswith("none")


def test_alexnet_metrics_name_the_input_normalisation():
    from model.cifar10 import MEAN, STD
    from model.tasks import get_task

    norm = get_task("alexnet-cifar10").input_normalisation
    assert norm["mean"] == list(MEAN) and norm["std"] == list(STD) and "/ 255" in norm["formula"]
