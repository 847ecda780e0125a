from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.tiny_cifar import write_tiny_cifar

# tests.cpu_time prints the run's CPU time (--cpu-top N: the costliest tests); fixtures pg_server (one PostgreSQL
# per session), pg_url (a fresh database), slurm_cluster (one Slurm per session)
pytest_plugins = ["tests.pg_server", "tests.slurm_cluster", "tests.cpu_time"]

# Two cores on CI: one thread per test process keeps multi-process tests from oversubscribing.
torch.set_num_threads(int(os.environ.get("ALEXSEARCH_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding cifar-10-batches-py/ with 5 x 80 training and 100 test images."""
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty study database on each backend, as Optuna tests its own storages: a SQLite file, and a fresh
    database on the session's PostgreSQL server (tests/pg_server.py)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("pg_url")
