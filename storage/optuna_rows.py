"""Conditional writes that Optuna's public API cannot express, each in one transaction.

Uses Optuna's private RDB models (checked against Optuna 5.0: optuna/storages/_rdb/models.py).

insert_study_user_attrs: study user attrs written once, all together, by exactly one process (the settings a
study is created with).

Optuna's set_study_user_attr overwrites, one key per transaction. Two `search` commands started together on
a new study would both find no settings and both write theirs (the last one wins, and both run); a kill or a
full disk between two writes would leave half the settings. Here all keys are INSERTed in one transaction:
the table's unique (study_id, key) constraint makes every other writer's INSERT fail, so exactly one wins,
and either all keys are written or none.

close_waiting_trial: WAITING -> FAIL only if still WAITING, so a trial another worker has just claimed
(WAITING -> RUNNING) is never failed under it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState


def insert_study_user_attrs(storage: RDBStorage, study_id: int, attrs: dict[str, Any]) -> bool:
    """Insert every key of attrs in one transaction. False (and nothing written) if any key already exists."""
    session = storage.scoped_session()
    try:
        for key, value in attrs.items():
            session.add(models.StudyUserAttributeModel(study_id=study_id, key=key, value_json=json.dumps(value)))
        session.commit()
        return True
    except sqlalchemy.exc.IntegrityError:
        session.rollback()
        return False
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def close_waiting_trial(storage: RDBStorage, trial_id: int, reason: str) -> bool:
    """FAIL the trial if it is still WAITING, with user attr closed_reason = reason. True if it was closed."""
    session = storage.scoped_session()
    try:
        # The row lock (PostgreSQL) or BEGIN IMMEDIATE (SQLite, storage/sqlite.py) keeps a claim out until commit.
        trial = session.query(models.TrialModel).filter(models.TrialModel.trial_id == trial_id).with_for_update()\
            .one_or_none()
        closed = trial is not None and trial.state == TrialState.WAITING
        if closed:
            trial.state = TrialState.FAIL
            trial.datetime_complete = dt.datetime.now()
            session.add(models.TrialUserAttributeModel(trial_id=trial_id, key="closed_reason",
                                                       value_json=json.dumps(reason)))
        session.commit()
        return closed
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
