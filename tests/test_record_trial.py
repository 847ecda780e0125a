"""storage.rdb.record: an epoch's intermediate value and user attrs in one transaction, on SQLite and PostgreSQL,
with the same result as Optuna's own calls."""

from __future__ import annotations

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError

from storage import rdb
from storage.study import open_storage


def test_record_writes_what_report_and_set_user_attr_write(storage_url):
    storage = open_storage(storage_url, create=True)
    study = optuna.create_study(study_name="r", storage=storage, direction="maximize")
    trial = study.ask()
    rdb.record(trial, {"val_acc": [0.5], "best_epoch": 1}, step=1, value=0.5)
    rdb.record(trial, {"val_acc": [0.5, 0.6], "best_epoch": 2, "note": "x"}, step=2, value=0.6)  # updates + insert
    rdb.record(trial, {"val_acc": [0.5, 0.6]}, step=2, value=0.7)  # a step is reported once, as trial.report
    rdb.record(trial, {})  # nothing to write: still fine
    assert trial.should_prune() is False  # the pruner reads the values through Optuna
    stored = storage.get_trial(trial._trial_id)
    assert stored.intermediate_values == {1: 0.5, 2: 0.6}
    assert stored.user_attrs == {"val_acc": [0.5, 0.6], "best_epoch": 2, "note": "x"}
    study.tell(trial, 0.6)
    with pytest.raises(UpdateFinishedTrialError):  # a finished trial is not written, as with Optuna's calls
        storage.record_trial(trial._trial_id, {"late": True}, 3, 0.9)
    with pytest.raises(UpdateFinishedTrialError):  # attrs alone, too
        storage.record_trial(trial._trial_id, {"late": True})
    assert "late" not in storage.get_trial(trial._trial_id).user_attrs
