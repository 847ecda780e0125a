"""The `alexsearch` command line. Bad input (a usage error) -> one line naming the field, exit 2, no traceback;
anything else is a bug -> its traceback, exit 1. `--debug` shows the traceback of usage errors too.

The top of the tree: nothing imports search.cli. Each command module has `add_parser(subparsers)` and `run(args)`.
Building the parser imports no torch, Optuna or SQLAlchemy, so `--help` answers at once (tests/test_help.py);
each command imports what it needs inside run().
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

try:  # a Ctrl-C while the modules load is a user's stop, not a crash
    from search.cli import dashboard, export, final, report, search, status, stop, studies, worker
    from search.errors import USAGE_ERRORS, one_line, silence_optuna_warnings, user_paths
except KeyboardInterrupt:
    print("alexsearch: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

STARTED = time.time()  # when the command began (before torch loads): what --timeout counts from

# In the order `--help` lists them.
COMMANDS = [search, worker, stop, status, studies, dashboard, export, final, report]


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse prints usage over several lines; we print one
        self.exit(2, f"{self.prog}: error: {message}\n")


def version() -> str:
    try:
        return metadata.version("alexsearch")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


DEBUG_HELP = "show the traceback of every error, usage errors too, and Optuna's own log lines"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="alexsearch",
        description="Optuna hyperparameter search for AlexNet on CIFAR-10.",
        epilog=search.CHOICES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"alexsearch {version()}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser, required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    for p in sub.choices.values():  # --debug after the command too; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        silence_optuna_warnings()  # after --help has answered: it imports Optuna
        if not args.debug:
            from storage.study import quiet_optuna

            quiet_optuna()  # the parent's own Optuna calls (creating a study) log nothing either
    except KeyboardInterrupt:  # start-up takes seconds (torch, Optuna): a Ctrl-C then is a stop, not a crash
        print("alexsearch: interrupted", file=sys.stderr)
        return 130
    try:
        with user_paths():  # every path a command touches is one the user gave (or defaulted): --out, --data ...
            return args.run(args)
    except USAGE_ERRORS as e:
        if args.debug:
            traceback.print_exc()
        print(f"alexsearch {args.command}: error: {one_line(e, getattr(args, 'storage', None))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexsearch {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(
            f"alexsearch {args.command}: internal error: a bug, not your input; the traceback above says where "
            "(please report it)",
            file=sys.stderr,
        )
        return 1


def entry() -> None:
    """The `alexsearch` console script and `python -m search.cli`: main(), then the end of the process without
    the interpreter's teardown (search/process_exit.py), which with torch loaded took longer than a short
    command's own work. Tests call main() and keep their interpreter."""
    code = main()
    from search.process_exit import exit_cleanly

    exit_cleanly(code)
    sys.exit(code)  # a thread still runs that a plain exit waits for
