"""The best trial so far, as files the dashboard serves: its weights and a learning-curve PNG.

Both are Optuna artifacts of the trial, in the artifact store next to the database, and the study's
user attr `best_artifacts` says which trial and artifact ids are the current best. Only the current
best's weights are kept (an AlexNet state_dict is ~90 MB); earlier bests keep their curve PNG, and
their weights entry in the dashboard then answers 404.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from storage.artifacts import artifact_store

ATTR = "best_artifacts"


def beats_complete_trials(study: optuna.Study, trial_number: int, value: float) -> bool:
    """value > the value of every other COMPLETE trial (True when there is none)."""
    others = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.number != trial_number and t.value is not None]
    return not others or value > max(others)


def save_curve_png(curves: dict[str, list[float]], path: Path, title: str) -> Path:
    """Train and validation accuracy per epoch (1-based), the best validation epoch marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # ~1 s to import: only when a best is published
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)  # Agg canvas without pyplot: no global state, safe in any thread or process
    ax = fig.add_subplot()
    for key, label in (("train_acc", "train accuracy"), ("val_acc", "validation accuracy")):
        values = curves.get(key) or []
        ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    val = curves.get("val_acc") or []
    if val:
        best = max(range(len(val)), key=val.__getitem__)
        ax.axvline(best + 1, color="grey", linestyle=":", label=f"best epoch {best + 1} ({val[best]:.4f})")
    ax.set(xlabel="epoch", ylabel="accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def publish_if_best(study: optuna.Study, trial: optuna.Trial, value: float, model_state: dict[str, Any],
                    curves: dict[str, list[float]], folder: Path) -> bool:
    """If value beats every COMPLETE trial so far, upload the weights and learning curve as artifacts of trial.

    Call it while trial is still running (trial artifacts are trial system attrs, frozen once the trial
    finishes). folder is the study's artifact folder (storage.artifacts.artifact_dir). Returns whether
    this trial is now the published best.
    """
    if not beats_complete_trials(study, trial.number, value):
        return False
    store = artifact_store(Path(folder))
    with tempfile.TemporaryDirectory(prefix="alexsearch-best-") as tmp:
        weights = Path(tmp) / f"trial-{trial.number}-weights.pt"
        torch.save({k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in model_state.items()}, weights)
        curve = save_curve_png(curves, Path(tmp) / f"trial-{trial.number}-curve.png",
                               f"{study.study_name}: trial {trial.number} (val_acc {value:.4f})")
        weights_id = upload_artifact(artifact_store=store, file_path=str(weights), study_or_trial=trial)
        curve_id = upload_artifact(artifact_store=store, file_path=str(curve), study_or_trial=trial)
    previous = study.user_attrs.get(ATTR)  # read again: a worker elsewhere may have published meanwhile
    if previous is not None and previous.get("value", float("-inf")) >= value:
        _remove(store, weights_id)  # lost the race to a better trial; its weights stay
        return False
    study.set_user_attr(ATTR, {"trial": trial.number, "value": value, "weights_id": weights_id,
                               "curve_id": curve_id, "epochs_trained": len(curves.get("val_acc") or [])})
    if previous is not None and previous.get("weights_id"):
        _remove(store, previous["weights_id"])
    return True


def _remove(store, artifact_id: str) -> None:
    try:
        store.remove(artifact_id)
    except ArtifactNotFound:
        pass
