"""Argument types and option groups shared by the subcommands."""

from __future__ import annotations

import argparse

from storage.url import DEFAULT_STORAGE


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


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def add_storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"SQLAlchemy URL of the study database (default: {DEFAULT_STORAGE})")
    p.add_argument("--study", default=None,
                   help="study name (default: for search, the task's name, e.g. alexnet-cifar10; "
                        "for the other commands, the only study in the storage)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="data", help="folder holding cifar-10-batches-py/ (default: ./data)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 into --data when it is missing")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
