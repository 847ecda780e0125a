"""Which data a run uses. Apart from the tasks (which need torch), so the command line can read its defaults
without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from model.config import MAX_SEED, ConfigError, JsonConfig


@dataclass(frozen=True)
class DataConfig(JsonConfig):
    root: str = "data"  # folder searched for the data (CIFAR-10: ROOT/cifar-10-batches-py)
    download: bool = False  # fetch the data when missing (needs internet)
    val_size: int | None = None  # hold-out size; None = the task's default
    train_size: int | None = None  # cap on training items for quick runs; None = all that remain
    split_seed: int = 0  # seeds the hold-out and the training cap

    def __post_init__(self) -> None:
        self.check_types()
        if self.val_size is not None and self.val_size < 1:
            raise ConfigError(f"val_size must be >= 1, got {self.val_size}")
        if self.train_size is not None and self.train_size < 1:
            raise ConfigError(f"train_size must be >= 1, got {self.train_size}")
        if not 0 <= self.split_seed <= MAX_SEED:
            raise ConfigError(f"split_seed must be in 0..{MAX_SEED}, got {self.split_seed}")
