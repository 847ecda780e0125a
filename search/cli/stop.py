"""`alexsearch stop`: ask every worker of a study, on any host, to stop at its next step."""

from __future__ import annotations

import argparse

from search.cli.args import add_storage_args

HELP = "ask every worker of a study, on any host, to stop at its next step; their trials are queued for retry"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stop",
        help=HELP,
        description=HELP + ". `alexsearch search` on the study clears the "
        "request and resumes it; `alexsearch worker` obeys it until then.",
    )
    add_storage_args(p)
    p.add_argument("--clear", action="store_true", help="remove a stop request instead, without starting workers")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from search.study.stop import STOP_POLL_S, clear_stop, request_stop
    from storage.study import load_study, open_storage

    storage = open_storage(args.storage, create=False)  # an existing study only: creates nothing
    name = load_study(storage, args.study).study_name
    if args.clear:
        was = clear_stop(storage, name)
        print(
            f"study {name!r}: cleared the stop request of {was['at']}"
            if was
            else f"study {name!r}: no stop request to clear"
        )
        return 0
    flag = request_stop(storage, name)
    print(
        f"study {name!r}: stop requested at {flag['at']}. Its workers stop after their current epoch, or within "
        f"{STOP_POLL_S:.0f} s inside a long one; running trials are queued for retry from their last checkpoint. "
        f"`alexsearch search` on the study resumes it."
    )
    return 0
