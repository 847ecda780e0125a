"""Argument types and option groups shared by the subcommands."""

from __future__ import annotations

import argparse

from storage.url import DEFAULT_STORAGE


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def any_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


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
