"""`alexsearch export` on a real tiny study: the best complete trial(s) as strict, round-tripping config files."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from model.alexnet import AlexNetConfig
from model.tasks import DataConfig
from model.train import TrainConfig
from search.cli import main
from search.export import ExportedConfig, export_best, load_exported, rank_path
from search.trials.trial_config import TrialConfig
from tests.helpers import digest

# Cheap trials: the MLP task, one batch of 20 points per epoch; a grid over lr so every trial is distinct and
# completes.
SPACE = """task = "mlp-synth"
[params]
lr = { choices = [1e-3, 3e-4] }
[fixed]
optimizer = "adam"
batch_size = 100
hidden = 16
"""
QUICK = [
    "--epochs",
    "2",
    "--train-size",
    "20",
    "--val-size",
    "10",
    "--device",
    "cpu",
    "--sampler",
    "grid",
    "--pruner",
    "none",
    "--patience",
    "0",
]


@pytest.fixture(scope="module")
def study_url(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("export")
    (folder / "space.toml").write_text(SPACE)
    url = f"sqlite:///{folder / 'study.db'}"
    rc = main(
        [
            "search",
            "--storage",
            url,
            "--task",
            "mlp-synth",
            "--space",
            str(folder / "space.toml"),
            "--trials",
            "2",
            *QUICK,
        ]
    )
    assert rc == 0
    return url


def load(url: str) -> optuna.Study:
    return optuna.load_study(study_name="mlp-synth", storage=url)


def test_export_writes_the_best_complete_trial(study_url, tmp_path, capsys):
    db = Path(study_url.removeprefix("sqlite:///"))
    before = digest(db)
    out = tmp_path / "sub" / "best.json"
    assert main(["export", "--storage", study_url, "--out", str(out)]) == 0
    assert digest(db) == before  # read-only
    printed = capsys.readouterr().out
    assert '"trial_config"' in printed and f"wrote {out}: rank 1" in printed

    best = load(study_url).best_trial
    exported = load_exported(out)
    cfg, prov = exported.trial_config, exported.provenance
    assert prov.study == "mlp-synth" and prov.trial == best.number and prov.rank == 1
    assert prov.storage == study_url and prov.val_acc == best.value and prov.device == "cpu"
    assert cfg.train.epochs == best.user_attrs["best_epoch"] == prov.best_epoch and prov.search_epochs == 2
    assert cfg.train.seed == best.user_attrs["seed"] == 0
    assert cfg.train.lr == best.params["lr"] and cfg.train.optimizer == "adam" and cfg.train.batch_size == 100
    assert cfg.model == {
        "activation": "sigmoid",
        "depth": 2,
        "second_activation": "sigmoid",
        "init": "glorot",
        "hidden": 16,
        "in_features": 2,
        "num_classes": 2,
    }
    assert (cfg.data.val_size, cfg.data.train_size, cfg.data.split_seed) == (10, 20, 0)
    assert exported.versions == best.user_attrs["versions"] and "torch" in exported.versions
    assert exported.format_version == 1
    # The file is the config's own JSON, and it round-trips.
    assert out.read_text() == exported.to_json() + "\n"
    assert ExportedConfig.from_json(out.read_text()) == exported


def test_export_top_k_writes_one_file_per_rank(study_url, tmp_path, capsys):
    out = tmp_path / "best.json"
    assert main(["export", "--storage", study_url, "--out", str(out), "--top", "2"]) == 0
    files = [out, tmp_path / "best-2.json"]
    assert sorted(tmp_path.iterdir()) == sorted(files) and rank_path(out, 2) == files[1]
    first, second = (load_exported(f) for f in files)
    assert (first.provenance.rank, second.provenance.rank) == (1, 2)
    assert first.provenance.val_acc >= second.provenance.val_acc
    assert first.provenance.trial != second.provenance.trial

    assert main(["export", "--storage", study_url, "--out", str(out), "--top", "5", "--force"]) == 0
    assert "only 2 complete trial(s)" in capsys.readouterr().out
    assert not (tmp_path / "best-3.json").exists()


def trial_config(epochs: int = 10) -> TrialConfig:
    return TrialConfig(
        "alexnet-cifar10",
        AlexNetConfig().to_dict(),
        TrainConfig(epochs=epochs, seed=3),
        DataConfig(root="somewhere", val_size=10),
    )


def add(study: optuna.Study, state: TrialState, value: float | None, attrs: dict) -> None:
    study.add_trial(
        create_trial(
            state=state,
            value=value,
            params={"lr": 1e-3},
            distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)},
            user_attrs=attrs,
        )
    )


def test_epochs_are_the_best_epoch_and_the_password_is_redacted(db_url):
    study = optuna.create_study(study_name="s", storage=db_url, direction="maximize")
    add(study, TrialState.COMPLETE, 0.6, {"config": trial_config().to_dict(), "best_epoch": 7})
    add(study, TrialState.COMPLETE, 0.6, {"config": trial_config().to_dict(), "best_epoch": 9})  # a tie: later
    add(study, TrialState.PRUNED, None, {"config": trial_config().to_dict()})
    [exported] = export_best(study, "postgresql+psycopg://alice:s3cret@db.example:5432/hpo")
    assert exported.trial_config.train.epochs == 7 and exported.provenance.search_epochs == 10
    assert exported.provenance.trial == 0 and exported.trial_config.train.seed == 3
    assert "s3cret" not in exported.to_json() and exported.provenance.storage.startswith("postgresql+psycopg://alice:")


@pytest.mark.parametrize("states", [[], [TrialState.PRUNED, TrialState.FAIL]], ids=["empty", "pruned-and-failed"])
def test_no_complete_trial_is_one_line_exit_2(states, db_url, tmp_path, capsys):
    study = optuna.create_study(study_name="s", storage=db_url, direction="maximize")
    for state in states:
        add(study, state, None, {})
    out = tmp_path / "best.json"
    capsys.readouterr()
    assert main(["export", "--storage", db_url, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alexsearch export: error: study 's' has no complete trial yet") and err.count("\n") == 1
    assert not out.exists()


def test_missing_database_is_not_created(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["export", "--storage", url, "--out", str(tmp_path / "best.json")]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_exported_json_lists_every_field(study_url, tmp_path):
    out = tmp_path / "best.json"
    assert main(["export", "--storage", study_url, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data) == ["trial_config", "provenance", "versions", "format_version"]
    assert set(data["trial_config"]["train"]) == set(TrainConfig.field_names())
    assert set(data["provenance"]) >= {"storage", "study", "trial", "val_acc", "best_epoch"}
