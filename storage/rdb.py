"""Optuna's RDBStorage with a heartbeat that outlives a dropped database connection, reads that take no
SQLite write lock, and one transaction for an epoch's records.

Heartbeat: Optuna beats from a thread that ends at the first failed write. A connection dropped while a beat
is in flight (a database restart, a failover, a firewall resetting the connection) thus stops the beats
of a trial that is still training, and after the grace period another worker fails and retries it:
the same trial would run twice. Here a failed beat is logged and skipped; the next beat, one interval
later, gets a fresh connection from the pool (pool_pre_ping), and nothing is lost as long as one beat
lands within the grace period.

Other storage calls are not retried: they take milliseconds, so a drop hits one only by bad luck, and
a retried write may already have committed. Such a call fails, and so does the trial it belongs to.

Reads: each of Optuna's methods is one transaction. READ_METHODS only read, so on SQLite they run inside
storage.sqlite.reading() and begin without the write lock; every other method (a trial claimed, a state,
param, value or attr written, a beat) still begins IMMEDIATE. On PostgreSQL the mark changes nothing.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from storage.optuna_private import cached_frozen_trial, rdb_backend, trial_id
from storage.sqlite import reading

logger = logging.getLogger(__name__)

# Checked against Optuna 5.0's RDBStorage: each of these opens one session, queries, and writes nothing.
READ_METHODS = ("get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
                "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs",
                "get_all_studies", "get_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial",
                "get_all_trials", "_get_trials", "get_best_trial", "_get_best_trial_id", "_get_stale_trial_ids",
                "count_trials", "state_counts", "last_trials")


def _read_only(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with reading():
            return method(self, *args, **kwargs)

    return wrapper


class SteadyRDBStorage(RDBStorage):
    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except (StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
            cause = e.__cause__ or e
            logger.warning("alexsearch: heartbeat of trial id %d missed (%s); the next beat retries",
                           trial_id, str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__)

    def record_trial(self, trial_id: int, user_attrs: dict[str, Any], step: int | None = None,
                     intermediate_value: float | None = None) -> None:
        """Set user attrs of a running trial, and its intermediate value at step if given, in ONE transaction.

        What set_trial_user_attr and set_trial_intermediate_value do, one commit instead of one per call
        (each commit of a WAL database is an fsync, and on SQLite holds the one write lock).
        """
        with _create_scoped_session(self.scoped_session, True) as session:
            if step is not None:
                self._set_trial_intermediate_value_without_commit(session, trial_id, step, intermediate_value)
            for key, value in user_attrs.items():
                self._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, key, value)

    # Reads that stay cheap on a study of 10,000 trials, where get_all_trials takes seconds (it builds every trial
    # with its params, values, attrs and intermediate values).

    def count_trials(self, study_id: int, states: tuple[TrialState, ...],
                     without_user_attr: str | None = None) -> int:
        """How many of the study's trials are in states, leaving out those with the user attr without_user_attr."""
        with _create_scoped_session(self.scoped_session) as session:
            query = session.query(sqlalchemy.func.count(models.TrialModel.trial_id)).filter(
                models.TrialModel.study_id == study_id, models.TrialModel.state.in_(states))
            if without_user_attr is not None:
                marked = session.query(models.TrialUserAttributeModel.trial_id).filter(
                    models.TrialUserAttributeModel.key == without_user_attr)
                query = query.filter(~models.TrialModel.trial_id.in_(marked))
            return int(query.scalar())

    def state_counts(self, study_id: int) -> dict[TrialState, int]:
        with _create_scoped_session(self.scoped_session) as session:
            rows = session.query(models.TrialModel.state, sqlalchemy.func.count(models.TrialModel.trial_id)).filter(
                models.TrialModel.study_id == study_id).group_by(models.TrialModel.state).all()
            return {state: int(n) for state, n in rows}

    def last_trials(self, study_id: int, n: int) -> list[FrozenTrial]:
        """The n trials with the highest numbers, in number order."""
        with _create_scoped_session(self.scoped_session) as session:
            ids = [row[0] for row in session.query(models.TrialModel.trial_id).filter(
                models.TrialModel.study_id == study_id).order_by(models.TrialModel.number.desc()).limit(n).all()]
        if not ids:
            return []
        # Optuna's own loader, limited to those ids: trial ids grow with trial numbers within a study.
        trials = self._get_trials(study_id, None, set(ids), min(ids) - 1)
        return sorted((t for t in trials if t._trial_id in set(ids)), key=lambda t: t.number)


for _name in READ_METHODS:
    setattr(SteadyRDBStorage, _name, _read_only(getattr(SteadyRDBStorage, _name)))


def record(trial: optuna.Trial, user_attrs: dict[str, Any], step: int | None = None,
           value: float | None = None) -> None:
    """trial.set_user_attr for each of user_attrs, and trial.report(value, step) if step is given, as ONE
    database transaction on our storage (one commit per epoch instead of one per attr). Other storages get
    the plain calls.

    Through storage.optuna_private: the trial's cached FrozenTrial, which Optuna's own set_user_attr and report
    keep in step with the database, and the RDBStorage under Optuna's _CachedStorage, which never caches a
    running trial, so writing past it leaves nothing stale.
    """
    backend = rdb_backend(trial.storage)
    cached = cached_frozen_trial(trial)
    if step is not None:
        step, value = int(step), float(value)
        if step in cached.intermediate_values:  # as trial.report: a step is reported once
            step = None
    if not isinstance(backend, SteadyRDBStorage):
        for key, v in user_attrs.items():
            trial.set_user_attr(key, v)
        if step is not None:
            trial.report(value, step)
        return
    backend.record_trial(trial_id(trial), user_attrs, step, value)
    cached.user_attrs.update(user_attrs)
    if step is not None:
        cached.intermediate_values[step] = value

