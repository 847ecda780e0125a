"""`alexsearch worker`: one worker on a study, for a second terminal or another machine."""

from __future__ import annotations

import argparse
import os

from search.cli.args import non_negative_int
from search.cli.search import add_search_args, settings_from_args

HELP = "run one worker on a study (same options as search), for another terminal or machine"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help=HELP, description=HELP)
    add_search_args(p)
    p.add_argument("--worker-index", type=non_negative_int, default=None,
                   help="offsets this worker's sampler seed; give each worker its own (default: from the process id)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from search.workers.run import WorkerPlace, run_worker  # torch, only when a worker runs

    settings, _ = settings_from_args(args)
    index = args.worker_index if args.worker_index is not None else os.getpid()
    return run_worker(settings, WorkerPlace(index=index))
