"""The best trial so far, as files the dashboard serves: its weights and a learning-curve SVG.

Both are Optuna artifacts in the artifact store next to the database, and the study's user attr
`best_artifacts` says which trial and artifact ids are the current best. The curve SVG (~5 KB) is an
artifact of its trial and is never deleted. The weights (~90 MB for AlexNet) are a *study* artifact named
`trial-N-weights.pt`, because a study's artifact list can change after a trial finishes and a trial's
cannot: when a better trial publishes, the former best's weights are taken off the list and then deleted,
so every artifact the dashboard lists downloads.

Disk bound: one weights file (the current best's), plus one per trial that is publishing right now (at
most one per worker; a worker killed mid-publish leaves its file until the next publish sweeps it), plus
one curve SVG per trial that was the best when it completed.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState

from search.study.curve_svg import save_curve_svg
from search.trials import record
from storage.artifacts import artifact_store, drop_study_artifact
from storage.optuna_private import study_system_attrs

ATTR = record.BEST_ARTIFACTS
_WEIGHTS_FILE = re.compile(r"trial-(\d+)-weights\.pt")


def beats_complete_trials(study: optuna.Study, trial_number: int, value: float) -> bool:
    """value > the value of every other COMPLETE trial (True when there is none).

    The storage's best trial is one indexed query, where reading every COMPLETE trial grew with the study (7 ms
    at 20 trials, paid at every completed trial). The trial publishing is still RUNNING, so it is not that best.
    """
    best = record.best_so_far(study)
    if best is None:
        return True
    if best[0] != trial_number:
        return value > best[1]
    others = [  # called after the trial completed (not how a worker calls it): compare with the others
        t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.number != trial_number and t.value is not None
    ]
    return not others or value > max(others)


def publish_if_best(
    study: optuna.Study,
    trial: optuna.Trial,
    value: float,
    model_state: dict[str, Any],
    curves: dict[str, list[float]],
    folder: Path,
) -> bool:
    """If value beats every COMPLETE trial so far, upload the weights and learning curve as artifacts of trial.

    Call it while trial is still running (trial artifacts are trial system attrs, frozen once the trial
    finishes). folder is the study's artifact folder (storage.artifacts.artifact_dir). Returns whether
    this trial is now the published best.
    """
    if not beats_complete_trials(study, trial.number, value):
        return False
    store = artifact_store(Path(folder))
    with tempfile.TemporaryDirectory(prefix="alexsearch-best-") as tmp:
        weights = Path(tmp) / weights_name(trial.number)
        torch.save({k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in model_state.items()}, weights)
        curve = save_curve_svg(
            curves,
            Path(tmp) / f"trial-{trial.number}-curve.svg",
            f"{study.study_name}: trial {trial.number} (val_acc {value:.4f})",
        )
        # The curve first: if the trial was finished under us, this write fails before the big file is stored.
        curve_id = upload_artifact(artifact_store=store, file_path=str(curve), study_or_trial=trial)
        weights_id = upload_artifact(artifact_store=store, file_path=str(weights), study_or_trial=study)
    previous = study.user_attrs.get(ATTR)  # read again: a worker elsewhere may have published meanwhile
    if previous is not None and previous.get("value", float("-inf")) >= value:
        drop_study_artifact(study, store, weights_id)  # lost the race to a better trial; its weights stay
        return False
    study.set_user_attr(
        ATTR,
        {
            "trial": trial.number,
            "value": value,
            "weights_id": weights_id,
            "curve_id": curve_id,
            "epochs_trained": len(curves.get(record.VAL_ACC) or []),
        },
    )
    sweep_weights(study, store, keep=weights_id)
    return True


def weights_name(trial_number: int) -> str:
    return f"trial-{trial_number}-weights.pt"


def sweep_weights(study: optuna.Study, store: FileSystemArtifactStore, keep: str) -> list[str]:
    """Drop every listed weights artifact but `keep` whose trial has finished (so it is done publishing):
    the former best, and the files of workers that lost a race or died mid-publish. Returns the ids dropped."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    dropped = []
    for meta in listed_study_artifacts(study):
        match = _WEIGHTS_FILE.fullmatch(meta["filename"])
        if match and meta["artifact_id"] != keep and int(match[1]) not in running:
            drop_study_artifact(study, store, meta["artifact_id"])
            dropped.append(meta["artifact_id"])
    return dropped


def listed_study_artifacts(study: optuna.Study) -> list[dict[str, Any]]:
    """The study's artifact entries, as optuna-dashboard lists them. Unlike optuna.artifacts.get_all_artifact_meta
    this skips the JSON null that a delete in plain optuna-dashboard leaves behind."""
    attrs = study_system_attrs(study)
    metas = [json.loads(v) for k, v in attrs.items() if k.startswith("artifacts:") and isinstance(v, str)]
    return [m for m in metas if isinstance(m, dict)]
