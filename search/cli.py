"""The `alexsearch` command line. Bad input -> one line naming the field, exit 2, no traceback."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from model.errors import ConfigError, DataError
from search.commands import search_cmd, status
from search.space import SpaceError
from storage.errors import StorageError

COMMANDS = [search_cmd, status]
USAGE_ERRORS = (ConfigError, DataError, SpaceError, StorageError, ValueError)


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
    warnings.filterwarnings("ignore", module="optuna")  # experimental-feature notices are not for users
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USAGE_ERRORS as e:
        print(f"alexsearch {args.command}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexsearch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
