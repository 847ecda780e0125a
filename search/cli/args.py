"""Argument types and option groups shared by the subcommands."""

from __future__ import annotations

import argparse

from model.tasks import DataConfig
from search.settings import MAX_SEED, SearchConfig, check_study_name

DEFAULTS = SearchConfig()  # one place for a default: the config dataclasses


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


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")


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


def add_storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=DEFAULTS.storage,
                   help=f"SQLAlchemy URL of the study database (default: {DEFAULTS.storage})")
    p.add_argument("--study", type=study_name, default=None,
                   help="study name (default: for search, the task's name, e.g. alexnet-cifar10; "
                        "for the other commands, the only study in the storage)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=DataConfig.root,
                   help=f"folder holding cifar-10-batches-py/ (default: ./{DataConfig.root})")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 into --data when it is missing")
    p.add_argument("--device", default=DEFAULTS.device,
                   help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
