"""Best-trial artifacts and the study note, on a real SQLite study and a real artifact store."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
import torch
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna_dashboard import get_note

from model.tasks import DataConfig
from search.settings import SearchConfig
from search.space.space import load_space
from search.study.best_artifacts import ATTR, publish_if_best
from search.study.note import save_study_note, study_note
from storage.artifacts import artifact_dir, artifact_store
from storage.study import open_storage, quiet_optuna

SVG = "{http://www.w3.org/2000/svg}"


def make_study(db_url: str) -> optuna.Study:
    quiet_optuna()
    return optuna.create_study(study_name="s", storage=open_storage(db_url, create=True), direction="maximize")


def curves(val: list[float]) -> dict[str, list[float]]:
    return {"train_acc": [v * 0.9 for v in val], "val_acc": val}


def state() -> dict[str, torch.Tensor]:
    return torch.nn.Linear(3, 2).state_dict()


def finish(study: optuna.Study, value: float, folder: Path) -> tuple[int, bool]:
    """One trial the way the objective runs it: publish while running, then complete."""
    trial = study.ask()
    published = publish_if_best(study, trial, value, state(), curves([value / 2, value]), folder)
    study.tell(trial, value)
    return trial.number, published


def test_first_trial_publishes_weights_and_curve(db_url, tmp_path):
    study = make_study(db_url)
    folder = artifact_dir(db_url)
    assert folder == tmp_path / "study-artifacts"
    number, published = finish(study, 0.5, folder)
    assert published
    best = study.user_attrs[ATTR]
    assert best["trial"] == number and best["value"] == 0.5 and best["epochs_trained"] == 2
    metas = {m.filename: m for m in get_all_artifact_meta(study.trials[number], storage=study._storage)}
    metas.update({m.filename: m for m in get_all_artifact_meta(study)})  # the weights are a study artifact
    assert set(metas) == {"trial-0-weights.pt", "trial-0-curve.svg"}
    assert metas["trial-0-weights.pt"].artifact_id == best["weights_id"]
    assert (
        metas["trial-0-curve.svg"].artifact_id == best["curve_id"]
        and metas["trial-0-curve.svg"].mimetype == "image/svg+xml"
    )
    store = artifact_store(folder)
    download_artifact(artifact_store=store, artifact_id=best["weights_id"], file_path=str(tmp_path / "w.pt"))
    loaded = torch.load(tmp_path / "w.pt", weights_only=True)
    assert set(loaded) == {"weight", "bias"} and loaded["weight"].shape == (2, 3)
    download_artifact(artifact_store=store, artifact_id=best["curve_id"], file_path=str(tmp_path / "c.svg"))
    svg = ET.parse(tmp_path / "c.svg").getroot()
    lines = svg.findall(f"{SVG}polyline")
    assert svg.tag == f"{SVG}svg" and len(lines) == 2  # a drawn figure: train and validation curves
    assert [len(line.get("points", "").split()) for line in lines] == [2, 2]  # one point per epoch


def test_only_a_better_trial_replaces_the_best_and_old_weights_are_dropped(db_url, tmp_path):
    study = make_study(db_url)
    folder = tmp_path / "art"
    finish(study, 0.5, folder)
    first = study.user_attrs[ATTR]
    assert finish(study, 0.5, folder)[1] is False  # a tie does not beat
    assert finish(study, 0.4, folder)[1] is False
    assert study.user_attrs[ATTR] == first
    number, published = finish(study, 0.7, folder)
    assert published and study.user_attrs[ATTR]["trial"] == number == 3
    files = {p.name for p in (folder / "optuna").iterdir()}
    assert first["weights_id"] not in files  # only the current best's weights stay on disk
    assert first["curve_id"] in files and study.user_attrs[ATTR]["weights_id"] in files
    assert len(files) == 3
    assert [m.filename for m in get_all_artifact_meta(study)] == ["trial-3-weights.pt"]  # listed = on disk


def test_pruned_and_failed_trials_do_not_count(db_url, tmp_path):
    study = make_study(db_url)
    pruned = study.ask()
    pruned.report(0.9, 1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    number, published = finish(study, 0.3, tmp_path / "art")
    assert published and study.user_attrs[ATTR]["trial"] == number


def test_a_worse_trial_that_finished_elsewhere_first_keeps_the_better_published(db_url, tmp_path):
    """Two workers: the better trial published while this one was uploading -> this one backs out."""
    study = make_study(db_url)
    folder = tmp_path / "art"
    slow = study.ask()
    fast = study.ask()
    assert publish_if_best(study, fast, 0.8, state(), curves([0.8]), folder)
    # slow started comparing before fast completed: it still sees no COMPLETE trial, so it uploads,
    # then finds the better published best and backs out.
    assert publish_if_best(study, slow, 0.6, state(), curves([0.6]), folder) is False
    assert study.user_attrs[ATTR]["trial"] == fast.number
    assert study.user_attrs[ATTR]["weights_id"] in {p.name for p in (folder / "optuna").iterdir()}


def test_study_note_tells_the_setup_and_is_saved(db_url):
    space = load_space(None, "alexnet-cifar10")
    settings = SearchConfig(
        study="s",
        trials=7,
        epochs=3,
        sampler="random",
        pruner="median",
        patience=2,
        warmup_epochs=1,
        startup_trials=4,
        device="auto",
        data=DataConfig(root="/d", val_size=500, train_size=2000, split_seed=5),
    )
    text = study_note(settings, space, "NVIDIA H100")
    for expected in (
        "## s",
        "lr in [1e-05, 0.01] log",
        "batch_size in {10, 100, 500}",
        "momentum = 0.9",
        "validation: 500 images",
        "split seed 5",
        "training: 2,000 images",
        "7 finished",
        "3 epochs each",
        "sampler: random",
        "pruner: median",
        "4 completed",
        "warm-up: 1 epoch",
        "patience: stop a trial after 2 epoch(s)",
        "device: NVIDIA H100",
        "torch ",
        "optuna ",
    ):
        assert expected in text, expected
    study = make_study(db_url)
    save_study_note(study, text)
    assert get_note(study) == text
    assert "training: all that remain" in study_note(SearchConfig(), space, "cpu")


def test_search_writes_the_note_on_create(db_url):
    from search.cli import main

    assert (
        main(
            [
                "search",
                "--storage",
                db_url,
                "--task",
                "mlp-synth",
                "--trials",
                "1",
                "--epochs",
                "1",
                "--train-size",
                "100",
                "--val-size",
                "50",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    study = optuna.load_study(study_name="mlp-synth", storage=open_storage(db_url, create=False))
    note = get_note(study)
    assert "device: cpu" in note and "validation: 50 images" in note and "training: 100 images" in note
    assert study.user_attrs["search_config"]["trials"] == 1


def test_a_dashboard_delete_of_the_weights_does_not_break_the_next_publish(db_url, tmp_path):
    """Plain optuna-dashboard deletes a study artifact by leaving a JSON null in its place."""
    import json as json_

    study = make_study(db_url)
    folder = tmp_path / "art"
    finish(study, 0.5, folder)
    study._storage.set_study_system_attr(
        study._study_id, "artifacts:" + study.user_attrs[ATTR]["weights_id"], json_.dumps(None)
    )
    number, published = finish(study, 0.7, folder)
    assert published and study.user_attrs[ATTR]["trial"] == number
