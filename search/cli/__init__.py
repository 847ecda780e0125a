"""The `alexsearch` command line. Bad input -> one line naming the field, exit 2, no traceback.

The top of the tree: nothing imports search.cli. Each command module has `add_parser(subparsers)` and `run(args)`.
Building the parser imports no torch, Optuna or SQLAlchemy, so `--help` answers at once (tests/test_help.py);
each command imports what it needs inside run().
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from search.cli import dashboard, export, final, report, search, status, stop, studies, worker

STARTED = time.time()  # when the command began (before torch loads): what --timeout counts from

# In the order `--help` lists them.
COMMANDS = [search, worker, stop, status, studies, dashboard, export, final, report]


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage over several lines; we print one
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="alexsearch", description="Optuna hyperparameter search for AlexNet on CIFAR-10.",
                           epilog=search.CHOICES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser, required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from search.errors import USAGE_ERRORS, one_line, silence_optuna_warnings  # after --help has answered

    silence_optuna_warnings()
    debug = bool(os.environ.get("ALEXSEARCH_DEBUG")) or getattr(args, "debug", False)
    if not debug:
        from storage.study import quiet_optuna

        quiet_optuna()  # the parent's own Optuna calls (creating a study) log nothing either
    try:
        return args.run(args)
    except USAGE_ERRORS as e:
        if debug:
            raise
        print(f"alexsearch {args.command}: error: {one_line(e, getattr(args, 'storage', None))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexsearch {args.command}: interrupted", file=sys.stderr)
        return 130
