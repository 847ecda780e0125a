"""Optuna's RDBStorage with a heartbeat that outlives a dropped database connection.

Optuna beats from a thread that ends at the first failed write. A connection dropped while a beat is
in flight (a database restart, a failover, a firewall resetting the connection) thus stops the beats
of a trial that is still training, and after the grace period another worker fails and retries it:
the same trial would run twice. Here a failed beat is logged and skipped; the next beat, one interval
later, gets a fresh connection from the pool (pool_pre_ping), and nothing is lost as long as one beat
lands within the grace period.

Other storage calls are not retried: they take milliseconds, so a drop hits one only by bad luck, and
a retried write may already have committed. Such a call fails, and so does the trial it belongs to.
"""

from __future__ import annotations

import logging

import sqlalchemy
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage

logger = logging.getLogger(__name__)


class SteadyRDBStorage(RDBStorage):
    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except (StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
            cause = e.__cause__ or e
            logger.warning("alexsearch: heartbeat of trial id %d missed (%s); the next beat retries",
                           trial_id, str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__)
