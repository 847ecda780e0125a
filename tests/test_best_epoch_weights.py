"""The best trial's weights artifact holds its best epoch's weights, not its last epoch's (issue 12, item 2)."""

from __future__ import annotations

import optuna
import torch
from optuna.artifacts import download_artifact

from model.tasks import DataConfig, get_task
from search.cli import main
from search.study.best_artifacts import ATTR
from search.trials.trial_config import TrialConfig
from storage.artifacts import artifact_store
from storage.study import open_storage

# One config, with an lr high enough that validation accuracy goes up and down from epoch to epoch.
SPACE = """task = "mlp-synth"

[params]
activation = { choices = ["relu"] }

[fixed]
depth = 2
init = "he"
hidden = 16
second_activation = "sigmoid"
optimizer = "adam"
lr = 0.2
batch_size = 128
"""


def accuracy(model: torch.nn.Module, data_config: DataConfig) -> float:
    task = get_task("mlp-synth")
    val = task.load_search_data(data_config).eval
    preprocess = task.make_preprocess(torch.device("cpu"))
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(val), 1000):  # the trainer's CPU eval batches, so the sums match exactly
            correct += int(
                (model(preprocess(val.x[start : start + 1000])).argmax(1) == val.y[start : start + 1000]).sum()
            )
    return correct / len(val)


def test_the_weights_artifact_scores_the_trials_value_on_the_validation_split(tmp_path):
    space, db_url, art = tmp_path / "space.toml", f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "art"
    space.write_text(SPACE)
    assert (
        main(
            [
                "search",
                "--task",
                "mlp-synth",
                "--space",
                str(space),
                "--storage",
                db_url,
                "--study",
                "best",
                "--trials",
                "1",
                "--epochs",
                "6",
                "--patience",
                "3",
                "--pruner",
                "none",
                "--train-size",
                "3000",
                "--val-size",
                "2000",
                "--device",
                "cpu",
                "--artifacts",
                str(art),
            ]
        )
        == 0
    )
    study = optuna.load_study(study_name="best", storage=open_storage(db_url, create=False))
    trial = study.best_trial
    epochs_trained = len(trial.user_attrs["val_acc"])
    assert trial.user_attrs["best_epoch"] < epochs_trained  # the last epoch is not the best: the test can tell
    path = tmp_path / "weights.pt"
    download_artifact(
        artifact_store=artifact_store(art), artifact_id=study.user_attrs[ATTR]["weights_id"], file_path=str(path)
    )
    weights = torch.load(path, weights_only=True)
    config = TrialConfig.from_dict(trial.user_attrs["config"])
    model = get_task("mlp-synth").build_model(config.model_config())
    model.load_state_dict(weights)
    got = accuracy(model, config.data)
    print(
        f"trial value {trial.value:.4f} (best epoch {trial.user_attrs['best_epoch']} of {epochs_trained}); "
        f"weights artifact scores {got:.4f}; last epoch's val_acc {trial.user_attrs['val_acc'][-1]:.4f}"
    )
    assert got == trial.value


def test_a_resumed_trial_keeps_its_best_epoch_from_before_the_crash(tmp_path):
    """The checkpoint carries the best epoch's weights when they are not the last epoch's."""
    from search.settings import SearchConfig
    from search.space.space import load_space
    from search.trials.objective import Objective
    from storage.checkpoints import CheckpointStore, CheckpointWriter

    space_file = tmp_path / "space.toml"
    space_file.write_text(SPACE)
    space = load_space(str(space_file), "mlp-synth")
    data_config = DataConfig(val_size=2000, train_size=3000)
    settings = SearchConfig(
        study="r",
        task="mlp-synth",
        space=str(space_file),
        epochs=7,
        patience=0,
        pruner="none",
        device="cpu",
        data=data_config,
    )
    data = space.task.load_search_data(data_config)
    got: dict = {}
    store = CheckpointStore(tmp_path / "ck")

    class Crash(Exception):
        pass

    def crash_after(n: int):
        def log(line: str) -> None:
            if f"epoch {n}/" in line:
                raise Crash(line)

        return log

    study = optuna.create_study(
        study_name="r", direction="maximize", storage=open_storage(f"sqlite:///{tmp_path / 'r.db'}", create=True)
    )
    writer = CheckpointWriter(store, every_s=0)  # a checkpoint after every epoch
    objective = Objective(space, settings, data, torch.device("cpu"), log=crash_after(6), checkpoints=writer)
    study.optimize(objective, n_trials=1, catch=(Crash,))
    writer.flush()  # the background write of the last epoch
    saved = torch.load(store.path(0), weights_only=True)
    first = study.trials[0]
    from storage.heartbeat import retry

    retry(study, first, max_retry=2)
    objective = Objective(
        space,
        settings,
        data,
        torch.device("cpu"),
        log=lambda line: None,
        checkpoints=writer,
        on_complete=lambda trial, value, weights, curves: got.update(value=value, weights=weights),
    )
    study.optimize(objective, n_trials=1)
    resumed = study.trials[1]
    assert resumed.user_attrs["resumed_from"] == {"trial": 0, "epoch": 6}
    assert saved["best"]["epoch"] < 6 and resumed.user_attrs["best_epoch"] == saved["best"]["epoch"]
    model = get_task("mlp-synth").build_model(TrialConfig.from_dict(resumed.user_attrs["config"]).model_config())
    model.load_state_dict(got["weights"])
    assert accuracy(model, data_config) == resumed.value == got["value"]
    print(
        f"checkpoint at epoch 6 held best epoch {saved['best']['epoch']}; resumed trial's best epoch "
        f"{resumed.user_attrs['best_epoch']}, value {resumed.value:.4f}"
    )
