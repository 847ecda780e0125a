"""The `alexsearch` command line. Bad input -> one line naming the field, exit 2, no traceback."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings
from collections.abc import Sequence

import optuna

import search.commands
from model.errors import ConfigError, DataError
from search.space import SpaceError
from storage.errors import StorageError
from storage.url import redact_text


def command_modules() -> list:
    """Every module in search/commands that defines NAME is a subcommand, listed by its ORDER."""
    modules = [importlib.import_module(f"search.commands.{m.name}")
               for m in pkgutil.iter_modules(search.commands.__path__)]
    return sorted((m for m in modules if hasattr(m, "NAME")), key=lambda m: (getattr(m, "ORDER", 99), m.NAME))
# OSError: a path the user gave cannot be read or written (a folder where a file should be, no permission).
USAGE_ERRORS = (ConfigError, DataError, SpaceError, StorageError, ValueError, OSError)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage over several lines; we print one
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="alexsearch", description="Optuna hyperparameter search for AlexNet on CIFAR-10.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser, required=True)
    for command in command_modules():
        command.add_parser(sub)
    return parser


def one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or type(e).__name__}"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def silence_optuna_warnings() -> None:
    """Optuna's experimental-feature notices are for developers, not for users of alexsearch."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", module="optuna")


def main(argv: Sequence[str] | None = None) -> int:
    silence_optuna_warnings()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USAGE_ERRORS as e:
        if os.environ.get("ALEXSEARCH_DEBUG"):
            raise
        message = redact_text(one_line(e), getattr(args, "storage", None))  # no error may quote a password
        print(f"alexsearch {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexsearch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
