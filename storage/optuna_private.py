"""Every use of Optuna's private API in alexsearch, in one place.

Checked against Optuna 5.0.0. Optuna does not promise these names, so when Optuna is upgraded, read its
source for each function here (optuna/study/study.py, optuna/trial/_trial.py, optuna/storages/_rdb/models.py,
optuna/storages/_rdb/storage.py, optuna/study/study.py:enqueue_trial) and run the tests. Public helpers are used
where Optuna has them (RetryHeartbeatStaleTrialCallback.retried_trial_number). Beside this module, storage/rdb.py
subclasses RDBStorage and wraps some of its methods by name (its READ_METHODS and _RIDDEN lists, private ones
such as _get_trials included): check those names too.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, cast

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from storage.sqlite import reading

# The system attr in which Study.enqueue_trial stores the params a WAITING trial will take.
FIXED_PARAMS = "fixed_params"


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (Study._storage)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of a study (Study._study_id), which storage calls take instead of its name."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (Trial._trial_id), which storage calls take instead of its number."""
    return trial._trial_id


def cached_frozen_trial(trial: optuna.Trial) -> FrozenTrial:
    """The trial's own cached FrozenTrial (Trial._cached_frozen_trial), which Trial.set_user_attr and
    Trial.report keep in step with what they write; a writer that goes past them must update it too."""
    return trial._cached_frozen_trial


def frozen(trial: optuna.Trial) -> FrozenTrial:
    """A running trial as the storage holds it now, system attrs included (Trial has no public system_attrs)."""
    return trial.storage.get_trial(trial._trial_id)


def fixed_params(t: FrozenTrial) -> dict[str, Any]:
    """The params enqueue_trial fixed for this trial (empty when it was not enqueued)."""
    return t.system_attrs.get(FIXED_PARAMS, {})


def rdb_backend(storage: BaseStorage) -> RDBStorage | None:
    """The RDBStorage under a study's storage, which Optuna wraps in a _CachedStorage (_CachedStorage._backend)."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def heartbeat_trial_ids(storage: BaseStorage) -> set[int]:
    """Ids of the trials that have ever recorded a heartbeat: their liveness is the heartbeat's to judge.

    Raises TypeError for a storage without a heartbeat table: an empty answer would make every running
    trial look dead to the reaper (the bug of issue 12, when the check looked at the _CachedStorage wrapper).
    """
    backend = rdb_backend(storage)
    if backend is None:
        raise TypeError(f"heartbeats need an RDBStorage, got {type(storage).__name__}")
    with backend.scoped_session() as session:
        ids = {row[0] for row in session.query(models.TrialHeartbeatModel.trial_id).all()}
        session.commit()  # end the read transaction now
    return ids


def delete_artifact_attr(study: optuna.Study, artifact_id: str) -> None:
    """Take a study artifact off the study's list. Optuna has no call that deletes a study system attr, and
    optuna-dashboard's own delete leaves a JSON null behind; so the row goes through the RDBStorage's session
    (optuna.artifacts._upload.ARTIFACTS_ATTR_PREFIX and the StudySystemAttributeModel table)."""
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

    backend = rdb_backend(study._storage)
    if backend is None:
        raise TypeError(f"dropping an artifact needs an RDBStorage, got {type(study._storage).__name__}")
    with backend.scoped_session() as session:
        session.query(models.StudySystemAttributeModel).filter_by(
            study_id=study._study_id, key=ARTIFACTS_ATTR_PREFIX + artifact_id
        ).delete()
        session.commit()


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """A study's system attrs (Study has no public reader for them)."""
    return study._storage.get_study_system_attrs(study._study_id)


def study_system_attr(storage: BaseStorage, study_id: int, key: str) -> Any:
    """One study system attr (None when unset), read as one row. Optuna reads them all, and a study's list grows
    with its artifacts and the dashboard note's versions: a worker that polls one flag each epoch reads one row."""
    backend = rdb_backend(storage)
    if backend is None:
        return storage.get_study_system_attrs(study_id).get(key)
    with reading(), backend.scoped_session() as session:
        row = (
            session.query(models.StudySystemAttributeModel.value_json)
            .filter_by(study_id=study_id, key=key)
            .one_or_none()
        )
        session.commit()  # end the read transaction now
    return None if row is None else json.loads(row[0])


def cached(storage: RDBStorage) -> BaseStorage:
    """storage behind Optuna's _CachedStorage (what optuna.load_study wraps it in): finished trials are read once
    and kept; each later read of the study fetches only the trials that were running or are new."""
    from optuna.storages._cached_storage import _CachedStorage

    return _CachedStorage(storage)


# Conditional writes that Optuna's public API cannot express, each in one transaction, on the RDB models
# (optuna/storages/_rdb/models.py).
#
# insert_study_user_attrs: Optuna's set_study_user_attr overwrites, one key per transaction. Two `search`
# commands started together on a new study would both find no settings and both write theirs (the last one
# wins, and both run); a kill or a full disk between two writes would leave half the settings. Here all keys
# are INSERTed in one transaction: the table's unique (study_id, key) constraint makes every other writer's
# INSERT fail, so exactly one wins, and either all keys are written or none.
#
# close_waiting_trial: WAITING -> FAIL only if still WAITING, so a trial another worker has just claimed
# (WAITING -> RUNNING) is never failed under it.


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


def close_waiting_trial(storage: RDBStorage, tid: int, key: str, reason: str) -> bool:
    """FAIL trial tid if it is still WAITING, with user attr key = reason. True if it was closed."""
    session = storage.scoped_session()
    try:
        # The row lock (PostgreSQL) or BEGIN IMMEDIATE (SQLite, storage/sqlite.py) keeps a claim out until commit.
        trial = (
            session.query(models.TrialModel).filter(models.TrialModel.trial_id == tid).with_for_update().one_or_none()
        )
        closed = False
        if trial is not None and trial.state == TrialState.WAITING:
            closed = True
            trial.state = TrialState.FAIL
            trial.datetime_complete = dt.datetime.now()
            session.add(models.TrialUserAttributeModel(trial_id=tid, key=key, value_json=json.dumps(reason)))
        session.commit()
        return closed
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# A trial's epoch in one transaction, and reads that stay cheap on a study of 10,000 trials (storage/rdb.py's
# SteadyRDBStorage calls these, inside its outage ride-out).


def record_trial(
    storage: RDBStorage, tid: int, user_attrs: dict[str, Any], step: int | None, value: float | None
) -> None:
    """What set_trial_intermediate_value(tid, step, value) and set_trial_user_attr for each of user_attrs do, in
    ONE transaction, with the trial's state checked once and the attrs written by one upsert statement (Optuna
    reads the trial and upserts once per attr: 2 statements each, 12 for an epoch's curves)."""
    with _create_scoped_session(storage.scoped_session, True) as session:
        if step is not None:  # Optuna's own write, which checks the trial's state
            assert value is not None, "a reported step needs its value"
            storage._set_trial_intermediate_value_without_commit(session, tid, step, value)
        else:
            trial = models.TrialModel.find_or_raise_by_id(tid, session)
            storage.check_trial_is_updatable(tid, cast(TrialState, trial.state))
        if not user_attrs:
            return
        dialect = _upsert_dialect(storage.engine.name)
        if dialect is None:  # MySQL and others: Optuna's own upsert, one per attr
            for key, v in user_attrs.items():
                storage._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, tid, key, v)
            return
        table = models.TrialUserAttributeModel
        insert = dialect.insert(table).values(
            [{"trial_id": tid, "key": key, "value_json": json.dumps(v)} for key, v in user_attrs.items()]
        )
        session.execute(
            insert.on_conflict_do_update(
                index_elements=[table.trial_id, table.key], set_={"value_json": insert.excluded.value_json}
            )
        )


def _upsert_dialect(name: str) -> Any:
    """The SQLAlchemy dialect module whose insert has on_conflict_do_update, imported when first needed: the
    PostgreSQL one takes 0.12 s to import, paid by every worker start on SQLite when imported at the top."""
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql
    return None


def count_trials(
    storage: RDBStorage, sid: int, states: tuple[TrialState, ...], without_user_attr: str | None = None
) -> int:
    """How many of study sid's trials are in states, leaving out those with the user attr without_user_attr."""
    with _create_scoped_session(storage.scoped_session) as session:
        query = session.query(sqlalchemy.func.count(models.TrialModel.trial_id)).filter(
            models.TrialModel.study_id == sid, models.TrialModel.state.in_(states)
        )
        if without_user_attr is not None:
            marked = session.query(models.TrialUserAttributeModel.trial_id).filter(
                models.TrialUserAttributeModel.key == without_user_attr
            )
            query = query.filter(~models.TrialModel.trial_id.in_(marked))
        return int(query.scalar())


def state_counts(storage: RDBStorage, sid: int) -> dict[TrialState, int]:
    """Study sid's trials counted by state, in one query."""
    with _create_scoped_session(storage.scoped_session) as session:
        rows = (
            session.query(models.TrialModel.state, sqlalchemy.func.count(models.TrialModel.trial_id))
            .filter(models.TrialModel.study_id == sid)
            .group_by(models.TrialModel.state)
            .all()
        )
        return {state: int(n) for state, n in rows}


def last_trials(storage: RDBStorage, sid: int, n: int) -> list[FrozenTrial]:
    """The n trials of study sid with the highest numbers, in number order."""
    with _create_scoped_session(storage.scoped_session) as session:
        ids = {
            row[0]
            for row in session.query(models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == sid)
            .order_by(models.TrialModel.number.desc())
            .limit(n)
            .all()
        }
    if not ids:
        return []
    # Optuna's own loader (RDBStorage._get_trials) from the lowest of those ids on: trial ids grow with trial
    # numbers within a study.
    trials = storage._get_trials(sid, None, ids, min(ids) - 1)
    return sorted((t for t in trials if t._trial_id in ids), key=lambda t: t.number)
