"""`alexsearch worker`: one worker on a study, for a second terminal or another machine."""

from __future__ import annotations

import argparse
import os

from search.cli.args import non_negative_int
from search.cli.search import CHOICES_HELP, add_search_args, settings_from_args

HELP = "run one worker on a study (same options as search), for another terminal or machine"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker", help=HELP, description=HELP, epilog=CHOICES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_search_args(p)
    p.add_argument(
        "--worker-index",
        type=non_negative_int,
        default=None,
        help="offsets this worker's sampler seed; give each worker its own (default: from the process id)",
    )
    p.add_argument(
        "--lines-only",
        action="store_true",
        help="print only the event lines, no progress bar or progress lines (for a watcher that reads "
        "this worker's log)",
    )
    p.add_argument(
        "--wait-for-database",
        action="store_true",
        help="wait (up to --db-outage-timeout) for a database server that cannot be reached at start, as the "
        "workers of `search` do; for workers a launcher starts on an existing study (a Slurm array task). "
        "Without it such a server is an error at once: a wrong host or port looks the same",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from search.cli import STARTED
    from search.workers.run import WorkerPlace, run_worker

    deadline = STARTED + args.timeout if args.timeout else None
    settings, _ = settings_from_args(args)
    index = args.worker_index if args.worker_index is not None else os.getpid()
    return run_worker(
        settings,
        WorkerPlace(
            index=index,
            deadline=deadline,
            debug=args.debug,
            progress_bar=not args.lines_only,
            study_exists=args.wait_for_database,
        ),
    )
