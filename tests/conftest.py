from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.tiny_cifar import write_tiny_cifar

# Two cores on CI: one thread per test process keeps multi-process tests from oversubscribing.
torch.set_num_threads(int(os.environ.get("ALEXSEARCH_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding cifar-10-batches-py/ with 5 x 80 training and 100 test images."""
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"
