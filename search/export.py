"""The export file: everything a final run needs to repeat a trial, as one frozen config.

An export holds the trial's whole TrialConfig with `train.epochs` set to the trial's best epoch, the package
versions it ran with, and where it came from. Reading one is strict: every key must be present (defaults are
not filled in, so a hand-edited file cannot silently change a value), unknown keys and other format versions
are refused, and each error names the field by its path, e.g. `trial_config.train.lr`.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from model.config import ConfigError, JsonConfig
from model.tasks import get_task
from search.trials import record
from search.trials.trial_config import TrialConfig
from storage.url import redact

FORMAT_VERSION = 1  # of the export file; bump when a field changes meaning


@dataclass(frozen=True)
class Provenance(JsonConfig):
    """Where an exported config came from. All None in a hand-written config that names no study."""

    storage: str | None = None  # the study's storage URL, password redacted
    study: str | None = None
    trial: int | None = None  # trial number in the study
    rank: int | None = None  # 1 = the study's best complete trial, 2 = second best, ...
    val_acc: float | None = None  # the trial's value: its best validation accuracy
    best_epoch: int | None = None  # the epoch of that accuracy, = trial_config.train.epochs
    search_epochs: int | None = None  # epochs the trial was configured to run in the search
    device: str | None = None  # where the trial ran
    exported_at: str | None = None  # ISO 8601, UTC


@dataclass(frozen=True)
class ExportedConfig(JsonConfig):
    trial_config: TrialConfig
    provenance: Provenance = field(default_factory=Provenance)
    versions: dict[str, Any] = field(default_factory=dict)  # package versions the trial ran with
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.check_types()
        check_format_version(self.format_version)


def check_format_version(version: Any) -> None:
    if version != FORMAT_VERSION:
        raise ConfigError(
            f"format_version: this file is format {version!r}; this alexsearch reads format "
            f"{FORMAT_VERSION} (export it again with this version)"
        )


def _config_class(tp: Any) -> type[JsonConfig] | None:
    """The JsonConfig class an annotation holds (also inside `X | None`), else None."""
    for arg in (tp, *typing.get_args(tp)):
        if isinstance(arg, type) and issubclass(arg, JsonConfig):
            return arg
    return None


def strict_from_dict(cls: type[JsonConfig], data: Any, path: str) -> JsonConfig:
    """cls.from_dict(data), but every field must be given, nested configs too; errors are prefixed with path."""
    where = f"{path}: " if path else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}expected a table of {cls.__name__} fields, got {data!r}")
    names = cls.field_names()
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"{where}unknown key {unknown[0]!r} (allowed: {', '.join(names)})")
    missing = [k for k in names if k not in data]
    if missing:
        raise ConfigError(f"{where}missing key {missing[0]!r}")
    hints = typing.get_type_hints(cls)
    checked = dict(data)
    for name in names:
        sub = _config_class(hints[name])
        child = f"{path}.{name}" if path else name
        if sub is not None and data[name] is not None:
            checked[name] = strict_from_dict(sub, data[name], child)
    if cls is TrialConfig and isinstance(data.get("task"), str):
        try:
            task = get_task(data["task"])
        except ValueError as e:
            raise ConfigError(f"{where}{e}") from None
        checked["model"] = strict_from_dict(task.model_config, data["model"], f"{path}.model").to_dict()
    try:
        return cls.from_dict(checked)
    except ValueError as e:  # ConfigError too; range checks in __post_init__ name the field without its path
        message = str(e)
        own = f"{cls.__name__}."  # "TrainConfig.lr: ..." -> "trial_config.train.lr: ..."
        if message.startswith(own):
            message = f"{path}.{message[len(own) :]}" if path else message[len(own) :]
            raise ConfigError(message) from None
        raise ConfigError(f"{where}{message}") from None


def parse_exported(text: str, source: str) -> ExportedConfig:
    """An ExportedConfig from JSON text; every error is one line starting with source and naming the field."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, list):
        raise ConfigError(f"{source}: holds a list; an export file holds one config (a table)")
    try:
        if isinstance(data, dict) and "format_version" in data:
            check_format_version(data["format_version"])  # before any other key: a newer format may differ
        return typing.cast(ExportedConfig, strict_from_dict(ExportedConfig, data, ""))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_exported(path: str | Path) -> ExportedConfig:
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"--config: no file at {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config: cannot read {path} ({type(e).__name__})") from None
    return parse_exported(text, str(path))


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Complete trials, best value first; ties go to the earlier trial."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(complete, key=lambda t: (sign * cast(float, t.value), t.number))


def export_trial(trial: FrozenTrial, study: optuna.Study, storage_url: str, rank: int) -> ExportedConfig:
    attrs = trial.user_attrs
    if record.CONFIG not in attrs:
        raise ConfigError(f"trial {trial.number}: has no user attr 'config' (not made by `alexsearch search`)")
    try:
        config = TrialConfig.from_dict(attrs[record.CONFIG])
    except (ConfigError, ValueError) as e:
        raise ConfigError(f"trial {trial.number}: its stored config is not usable: {e}") from None
    # The epoch of the best validation accuracy; a trial without it (none is known) keeps its epochs.
    best_epoch = attrs.get(record.BEST_EPOCH)
    epochs = best_epoch if isinstance(best_epoch, int) and best_epoch >= 1 else config.train.epochs
    provenance = Provenance(
        storage=redact(storage_url),
        study=study.study_name,
        trial=trial.number,
        rank=rank,
        val_acc=trial.value,
        best_epoch=epochs,
        search_epochs=config.train.epochs,
        device=attrs.get(record.DEVICE),
        exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    trial_config = config.replace(train=config.train.replace(epochs=epochs))
    versions = dict(attrs.get(record.VERSIONS, {}))
    return ExportedConfig(trial_config=trial_config, provenance=provenance, versions=versions)


def export_best(study: optuna.Study, storage_url: str, top: int = 1) -> list[ExportedConfig]:
    """The best `top` complete trials as exports, best first. ConfigError when the study has none."""
    ranked = ranked_trials(study)
    if not ranked:
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        counts = ", ".join(f"{s.lower()} {states.count(s)}" for s in sorted(set(states))) or "no trials"
        raise ConfigError(
            f"study {study.study_name!r} has no complete trial yet ({counts}); "
            "run `alexsearch search` until one completes"
        )
    return [export_trial(t, study, storage_url, rank) for rank, t in enumerate(ranked[:top], start=1)]


def rank_path(out: Path, rank: int) -> Path:
    """best.json for rank 1, best-2.json, best-3.json ... for the others."""
    return out if rank == 1 else out.with_name(f"{out.stem}-{rank}{out.suffix}")
