"""The `alexsearch` command line. Bad input -> one line naming the field, exit 2, no traceback.

The top of the tree: nothing imports search.cli. Each command module has `add_parser(subparsers)` and `run(args)`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from search.cli import dashboard, export, final, report, search, status, worker
from search.errors import USAGE_ERRORS, one_line, silence_optuna_warnings

COMMANDS = [search, worker, dashboard, export, final, report, status]  # in the order `--help` lists them


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage over several lines; we print one
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="alexsearch", description="Optuna hyperparameter search for AlexNet on CIFAR-10.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser, required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    silence_optuna_warnings()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USAGE_ERRORS as e:
        if os.environ.get("ALEXSEARCH_DEBUG"):
            raise
        print(f"alexsearch {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexsearch {args.command}: interrupted", file=sys.stderr)
        return 130
