"""Search spaces: parsed from TOML, validated with messages that name the key, sampled per trial.

A space file has a `task`, a `[params]` table of searched parameters and a `[fixed]` table of
constants. A searched parameter is `{ choices = [...] }` or `{ low = a, high = b, log = bool, step = s }`.
Every name must be a field of the task's model config or of the training config.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import torch

from model.config import ConfigError, JsonConfig
from model.tasks import Task, get_task
from model.train import TrainConfig
from search.errors import UsageError

# Set by the CLI for every trial, so a space file may not set them.
RESERVED = ("epochs", "seed")
TOP_KEYS = ("task", "params", "fixed")
RANGE_KEYS = ("low", "high", "log", "step")
MAX_MODEL_BUILDS = 256  # meta-device builds to check a space's models: all combinations up to this many


class SpaceError(UsageError):
    """A space file is malformed. The message names the file and the key."""


@dataclass(frozen=True)
class Choice:
    name: str
    choices: tuple

    def suggest(self, trial: optuna.Trial) -> Any:
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class Range:
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)


Param = Choice | Range


@dataclass(frozen=True)
class Space:
    source: str  # file path or package resource name, for messages and the study note
    task: Task
    params: tuple[Param, ...]
    fixed: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def is_categorical(self) -> bool:
        return all(isinstance(p, Choice) for p in self.params)

    def grid(self) -> dict[str, list]:
        """The search space for optuna's GridSampler; every parameter must be a list of choices."""
        ranges = [p.name for p in self.params if isinstance(p, Range)]
        if ranges:
            raise SpaceError(
                f"{self.source}: --sampler grid needs choices for every parameter; params.{ranges[0]} is a range"
            )
        return {p.name: list(p.choices) for p in self.params if isinstance(p, Choice)}

    def grid_size(self) -> int:
        return math.prod(len(p.choices) for p in self.params if isinstance(p, Choice))

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    def build(self, values: dict[str, Any], **train_overrides: Any) -> tuple[JsonConfig, TrainConfig]:
        """Model and training configs from sampled values, fixed values and the CLI's overrides."""
        merged = {**self.fixed, **values}
        model_keys = set(self.task.model_config.field_names())
        model = self.task.model_config.from_dict({k: v for k, v in merged.items() if k in model_keys})
        train = TrainConfig.from_dict({**{k: v for k, v in merged.items() if k not in model_keys}, **train_overrides})
        return model, train

    def model_candidates(self) -> list[dict[str, Any]]:
        """Searched model values to check: every choice, and a range's two ends (its largest model is at one).

        All combinations when there are at most MAX_MODEL_BUILDS (so hidden = 4096 with depth = 3 is built);
        else each value once, the other parameters at their first value.
        """
        model_keys = set(self.task.model_config.field_names())
        options = {
            p.name: (
                list(p.choices) if isinstance(p, Choice) else [int(v) if p.integer else v for v in (p.low, p.high)]
            )
            for p in self.params
            if p.name in model_keys
        }
        names = list(options)
        if math.prod(len(v) for v in options.values()) <= MAX_MODEL_BUILDS:
            return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*options.values())]
        first = {n: v[0] for n, v in options.items()}
        return [{**first, n: v} for n in names for v in options[n]]

    def check_models(self, device: torch.device | None = None) -> None:
        """Build the model of every candidate on the meta device (no memory taken); with a device, refuse a
        model whose training state would not fit it. Names the space file and the values."""
        model_keys = set(self.task.model_config.field_names())
        fixed = {k: v for k, v in self.fixed.items() if k in model_keys}
        for values in self.model_candidates():
            where = ", ".join(f"params.{k} = {_fmt(v)}" for k, v in values.items()) or "the fixed model"
            try:
                config = self.task.model_config.from_dict({**fixed, **values})
                self.task.check_model(config)
                if device is None:
                    self.task.model_parameters(config)
                else:
                    self.task.check_fits(config, device)
            except (ConfigError, ValueError) as e:
                raise SpaceError(f"{self.source}: {where}: {e}") from None

    def describe(self) -> str:
        parts = []
        for p in self.params:
            if isinstance(p, Choice):
                parts.append(f"{p.name} in {{{', '.join(map(_fmt, p.choices))}}}")
            else:
                scale = " log" if p.log else ""
                parts.append(f"{p.name} in [{_fmt(p.low)}, {_fmt(p.high)}]{scale}")
        parts += [f"{k} = {_fmt(v)}" for k, v in self.fixed.items()]
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        params: dict[str, dict[str, Any]] = {}
        for p in self.params:
            if isinstance(p, Choice):
                params[p.name] = {"choices": list(p.choices)}
            else:
                params[p.name] = {
                    "low": p.low,
                    "high": p.high,
                    "log": p.log,
                    **({"step": p.step} if p.step is not None else {}),
                }
        return {"task": self.task.name, "params": params, "fixed": dict(self.fixed)}


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _allowed(task: Task) -> list[str]:
    return [n for n in task.model_config.field_names() + TrainConfig.field_names() if n not in RESERVED]


def _check_value(src: str, where: str, task: Task, name: str, value: Any) -> None:
    """Build a config holding only name=value, so a bad type or range fails here, naming the key."""
    try:  # the config's own checks, then the task's (e.g. augment for a task without augmentation)
        if name in task.model_config.field_names():
            task.check_model(task.model_config.from_dict({name: value}))
        else:
            task.check_train(TrainConfig.from_dict({name: value}))
    except (ConfigError, ValueError) as e:
        raise SpaceError(f"{src}: {where}: {value!r} is not allowed ({e})") from None


def _parse_param(src: str, task: Task, name: str, spec: Any) -> Param:
    where = f"params.{name}"
    if not isinstance(spec, dict):
        raise SpaceError(f"{src}: {where} must be a table like {{ choices = [...] }} or {{ low = a, high = b }}")
    if "choices" in spec:
        extra = [k for k in spec if k != "choices"]
        if extra:
            raise SpaceError(f"{src}: {where}.{extra[0]}: unknown key (a choices parameter takes only 'choices')")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{src}: {where}.choices must be a non-empty list")
        if len(set(map(repr, choices))) != len(choices):
            raise SpaceError(f"{src}: {where}.choices has a repeated value")
        for c in choices:
            _check_value(src, f"{where}.choices", task, name, c)
        return Choice(name, tuple(choices))
    unknown = [k for k in spec if k not in RANGE_KEYS]
    if unknown:
        raise SpaceError(f"{src}: {where}.{unknown[0]}: unknown key (allowed: choices, {', '.join(RANGE_KEYS)})")
    for key in ("low", "high"):
        if key not in spec:
            raise SpaceError(f"{src}: {where}: missing key '{key}' (or give 'choices')")
        if isinstance(spec[key], bool) or not isinstance(spec[key], (int, float)):
            raise SpaceError(f"{src}: {where}.{key} must be a number, got {spec[key]!r}")
    low, high = spec["low"], spec["high"]
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise SpaceError(f"{src}: {where}.log must be true or false, got {log!r}")
    if low > high:
        raise SpaceError(f"{src}: {where}: low ({low}) > high ({high})")
    if log and low <= 0:
        raise SpaceError(f"{src}: {where}: log scale needs low > 0, got low = {low}")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise SpaceError(f"{src}: {where}.step must be a positive number, got {step!r}")
        if log:
            raise SpaceError(f"{src}: {where}: step and log cannot be used together")
    integer = all(isinstance(v, int) for v in (low, high)) and (step is None or isinstance(step, int))
    for v in (low, high):
        _check_value(src, where, task, name, int(v) if integer else float(v))
    return Range(name, float(low), float(high), log, None if step is None else float(step), integer)


def parse_space(text: str, source: str, task_name: str | None = None) -> Space:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpaceError(f"{source}: not valid TOML ({e})") from None
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise SpaceError(f"{source}: unknown key {unknown[0]!r} (allowed: {', '.join(TOP_KEYS)})")
    name = raw.get("task", task_name or "alexnet-cifar10")
    if task_name is not None and name != task_name:
        raise SpaceError(f"{source}: task is {name!r} but --task is {task_name!r}")
    try:
        task = get_task(name)
    except ValueError as e:
        raise SpaceError(f"{source}: {e}") from None
    params_raw, fixed_raw = raw.get("params", {}), raw.get("fixed", {})
    for key, table in (("params", params_raw), ("fixed", fixed_raw)):
        if not isinstance(table, dict):
            raise SpaceError(f"{source}: '{key}' must be a table")
    if not params_raw:
        raise SpaceError(f"{source}: [params] is empty; a search needs at least one parameter")
    allowed = _allowed(task)
    for section, table in (("params", params_raw), ("fixed", fixed_raw)):
        for key in table:
            if key in RESERVED:
                raise SpaceError(f"{source}: {section}.{key}: set by the command line (--{key}), not the space file")
            if key not in allowed:
                raise SpaceError(f"{source}: {section}.{key}: unknown parameter (allowed: {', '.join(allowed)})")
    both = set(params_raw) & set(fixed_raw)
    if both:
        raise SpaceError(f"{source}: {sorted(both)[0]} is both searched and fixed")
    for key, value in fixed_raw.items():
        _check_value(source, f"fixed.{key}", task, key, value)
    params = tuple(_parse_param(source, task, k, v) for k, v in params_raw.items())
    space = Space(source, task, params, dict(fixed_raw))
    space.check_models()  # every model a trial may build can be built; its size is checked against the device later
    return space


def builtin_space_path(file_name: str) -> Path:
    return Path(str(resources.files("search.spaces").joinpath(file_name)))


def load_space(path: str | Path | None, task_name: str | None = None) -> Space:
    """The user's space file, or the task's shipped default when path is None."""
    if path is None:
        task = get_task(task_name or "alexnet-cifar10")
        path = builtin_space_path(task.space_file)
        source = f"{task.space_file} (built in)"
    else:
        path = Path(path).expanduser()
        source = str(path)
        if not path.is_file():
            raise SpaceError(f"--space: no file at {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpaceError(
            f"--space: {source} is not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}); save it as UTF-8"
        ) from None
    except OSError as e:
        raise SpaceError(f"--space: cannot read {source} ({e.strerror or type(e).__name__})") from None
    return parse_space(text, source, task_name)
