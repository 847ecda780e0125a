"""The settings of a search, as given on the command line. Saved on the study."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from model.config import MAX_SEED, JsonConfig
from model.data_config import DataConfig
from search.errors import UsageError
from storage.defaults import DEFAULT_STORAGE, GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, MAX_RETRY, OUTAGE_TIMEOUT_S

DEFAULT_STUDY = "alexnet-cifar10"
CHECKPOINT_EVERY_S = 60.0  # a kill or power cut loses at most about this much of a trial's training
MAX_STUDY_NAME = 200  # characters; Optuna stores up to 512, and a name is also shown in every line and folder


def check_study_name(name: str) -> str:
    if not name.strip():
        raise UsageError(f"--study: must be a name of 1 to {MAX_STUDY_NAME} characters, not empty or blank")
    if len(name) > MAX_STUDY_NAME:
        raise UsageError(f"--study: must be at most {MAX_STUDY_NAME} characters, got {len(name)}")
    return name


@dataclass(frozen=True)
class SearchConfig(JsonConfig):
    study: str = DEFAULT_STUDY
    storage: str = DEFAULT_STORAGE
    task: str = "alexnet-cifar10"
    space: str | None = None  # a TOML file; None = the task's built-in space
    trials: int = 20  # finished (complete or pruned) trials the whole study aims at
    epochs: int = 10
    strategy: Literal["optuna", "stepwise"] = "optuna"  # stepwise: the report's Table 1 protocol
    sampler: Literal["tpe", "grid", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    patience: int = 3  # epochs without improvement before a trial stops; 0 = never
    warmup_epochs: int = 1  # epochs before the pruner may prune a trial
    startup_trials: int = 3  # completed trials before the median pruner starts pruning
    tpe_startup_trials: int | None = None  # random trials before TPE models; None = a third of trials, >= 3
    seed: int = 0  # seeds the sampler and every trial's training
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] | None = None  # None: the space file's, else auto
    data: DataConfig = DataConfig()
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S  # seconds between a running trial's heartbeats
    grace_period: int = GRACE_PERIOD_S  # seconds without a heartbeat before a trial counts as dead
    max_retry: int = MAX_RETRY  # retries of a dead trial; each resumes from the last checkpoint
    db_outage_timeout: int = int(OUTAGE_TIMEOUT_S)  # seconds a worker waits for an unreachable database
    artifacts: str | None = None  # artifacts + checkpoints folder; None = next to the SQLite database
    checkpoint_every: float = CHECKPOINT_EVERY_S  # seconds between a trial's checkpoints; 0 = every epoch

    # What a study's trials must share to be comparable: resuming with another value is refused.
    # (trials, device, precision, storage paths and heartbeat timing may change between runs.)
    FIXED_FOR_STUDY = (
        "task",
        "epochs",
        "strategy",
        "sampler",
        "pruner",
        "patience",
        "warmup_epochs",
        "startup_trials",
        "seed",
    )
    FIXED_DATA_FOR_STUDY = ("val_size", "train_size", "split_seed")

    def conflict_with(self, stored: dict) -> str | None:
        """A one-line error naming the first setting that differs from the study's stored search_config."""
        pairs = [(f"--{k.replace('_', '-')}", stored.get(k), getattr(self, k)) for k in self.FIXED_FOR_STUDY]
        pairs += [
            (f"--{k.replace('_', '-')}", stored.get("data", {}).get(k), getattr(self.data, k))
            for k in self.FIXED_DATA_FOR_STUDY
        ]
        for option, was, now in pairs:
            if was != now:
                return (
                    f"{option}: study {self.study!r} was created with {was}, not {now}; resume it with the "
                    f"same value, or start a new study with --study"
                )
        return None

    def tpe_startup(self) -> int:
        """Random trials before TPE models the results: about a third of the budget, at least 3. Optuna's
        default of 10 would make a 7-trial TPE study a random one."""
        if self.tpe_startup_trials is not None:
            return self.tpe_startup_trials
        return max(3, round(self.trials / 3))

    def __post_init__(self) -> None:
        self.check_types()
        for name in ("trials", "epochs"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("heartbeat_interval", "grace_period"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')}: must be >= 1 second, got {getattr(self, name)}")
        if self.grace_period <= self.heartbeat_interval:
            raise UsageError(
                f"--grace-period: must be longer than --heartbeat-interval "
                f"({self.heartbeat_interval} s), got {self.grace_period}"
            )
        if not self.checkpoint_every >= 0:
            raise UsageError(f"--checkpoint-every: must be >= 0 seconds, got {self.checkpoint_every}")
        for name in ("patience", "warmup_epochs", "startup_trials", "max_retry", "db_outage_timeout"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')}: must be >= 0, got {getattr(self, name)}")
        if self.tpe_startup_trials is not None and self.tpe_startup_trials < 0:
            raise UsageError(f"--tpe-startup-trials: must be >= 0, got {self.tpe_startup_trials}")
        check_study_name(self.study)
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed: must be in 0..{MAX_SEED} (numpy's seed range), got {self.seed}")
