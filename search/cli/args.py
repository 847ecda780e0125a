"""Argument types and option groups shared by the subcommands.

Imported for `--help`: nothing here (or in a command module's top level) may import torch, Optuna or
SQLAlchemy; each command imports what it runs inside its run function.
"""

from __future__ import annotations

import argparse
import re
import typing

from model.data_config import DataConfig
from search.settings import MAX_SEED, SearchConfig, check_study_name
from storage.url import url_from_env

DEFAULTS = SearchConfig()  # one place for a default: the config dataclasses
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}


def _int_at_least(low: int, wording: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be {wording}, got {text!r}")
        return value

    return parse


def duration_s(text: str) -> float:
    """'90s', '30m', '2h', '1.5h' or plain seconds ('600') -> seconds."""
    m = _DURATION.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"must be a duration like 90s, 30m or 2h, got {text!r}")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def literal_choices(cls: type, field: str) -> tuple:
    """The values a config dataclass's Literal field allows: argparse choices from the one place they are set."""
    hint = typing.get_type_hints(cls)[field]
    for arg in (hint, *typing.get_args(hint)):
        if typing.get_origin(arg) is typing.Literal:
            return typing.get_args(arg)
    raise TypeError(f"{cls.__name__}.{field} is not a Literal")


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def seed_int(text: str) -> int:
    value = non_negative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be in 0..{MAX_SEED} (numpy's seed range), got {text!r}")
    return value


def study_name(text: str) -> str:
    try:
        return check_study_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--study: ")) from None


STORAGE_HELP = "; env:NAME reads it from environment variable NAME, so a password shows in no command line"


def storage_url(text: str) -> str:
    """--storage: a SQLAlchemy URL as given, or env:NAME for the URL in environment variable NAME."""
    try:
        return url_from_env(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        type=storage_url,
        default=DEFAULTS.storage,
        help=f"SQLAlchemy URL of the study database (default: {DEFAULTS.storage}){STORAGE_HELP}",
    )
    p.add_argument(
        "--study",
        type=study_name,
        default=None,
        help="study name (default: for search, the task's name, e.g. alexnet-cifar10; "
        "for the other commands, the only study in the storage)",
    )


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", default=DataConfig.root, help=f"folder holding cifar-10-batches-py/ (default: ./{DataConfig.root})"
    )
    p.add_argument("--download", action="store_true", help="download CIFAR-10 into --data when it is missing")
    p.add_argument(
        "--device", default=DEFAULTS.device, help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"
    )
