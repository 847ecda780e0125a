"""Every use of Optuna's private API in alexsearch, in one place.

Checked against Optuna 5.0.0. Optuna does not promise these names, so when Optuna is upgraded, read its
source for each function here (optuna/study/study.py, optuna/trial/_trial.py, optuna/storages/_rdb/models.py,
optuna/study/study.py:enqueue_trial) and run the tests. Public helpers are used where Optuna has them
(RetryHeartbeatStaleTrialCallback.retried_trial_number).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

# The system attr in which Study.enqueue_trial stores the params a WAITING trial will take.
FIXED_PARAMS = "fixed_params"


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (Study._storage)."""
    return study._storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (Trial._trial_id), which storage calls take instead of its number."""
    return trial._trial_id


def frozen(trial: optuna.Trial) -> FrozenTrial:
    """A running trial as the storage holds it now, system attrs included (Trial has no public system_attrs)."""
    return trial.storage.get_trial(trial._trial_id)


def fixed_params(t: FrozenTrial) -> dict[str, Any]:
    """The params enqueue_trial fixed for this trial (empty when it was not enqueued)."""
    return t.system_attrs.get(FIXED_PARAMS, {})


def heartbeat_trial_ids(storage: BaseStorage) -> set[int]:
    """Ids of the trials that have ever recorded a heartbeat; empty for a storage without a heartbeat table."""
    if not hasattr(storage, "scoped_session"):  # only RDBStorage keeps heartbeats in a table we can read
        return set()
    from optuna.storages._rdb import models

    with storage.scoped_session() as session:
        ids = {row[0] for row in session.query(models.TrialHeartbeatModel.trial_id).all()}
        session.commit()
    return ids
