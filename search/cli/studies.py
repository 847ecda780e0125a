"""`alexsearch studies`: the studies in a storage, their trials by state, best value and final result."""

from __future__ import annotations

import argparse

from search.cli.args import STORAGE_HELP, storage_url
from storage.defaults import DEFAULT_STORAGE

HELP = "list the studies in a storage: trials by state, best val_acc, final test accuracy, stop requests"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("studies", help=HELP, description=HELP)
    p.add_argument(
        "--storage",
        type=storage_url,
        default=DEFAULT_STORAGE,
        help=f"SQLAlchemy URL of the study database (default: {DEFAULT_STORAGE}){STORAGE_HELP}",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from optuna.trial import TrialState

    from search.cli.status import format_table
    from search.trials import record
    from storage.study import open_storage

    storage = open_storage(args.storage, create=False)
    rows = []
    for s in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        trials = storage.get_all_trials(storage.get_study_id_from_name(s.study_name), deepcopy=False)
        count = {state: sum(t.state == state for t in trials) for state in TrialState}
        budget = s.user_attrs.get(record.SEARCH_CONFIG, {}).get("trials")
        finished = sum(t.state in record.FINISHED and not record.is_duplicate(t) for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        best = max(complete, key=lambda t: (t.value, -t.number), default=None)
        final = s.user_attrs.get(record.FINAL_RESULT)
        final_text = "-"
        if final and final.get("test_acc_mean") is not None:
            final_text = f"{final['test_acc_mean']:.4f}"
            seeds = len(final.get("test_acc_per_seed") or [])
            if final.get("test_acc_std") is not None and seeds > 1:
                final_text += f" ± {final['test_acc_std']:.4f} ({seeds} seeds)"
        note = "stop requested" if s.system_attrs.get(record.STOP_REQUEST) else ""
        rows.append(
            [
                s.study_name,
                f"{finished}/{budget}" if budget else str(finished),
                str(count[TrialState.COMPLETE]),
                str(count[TrialState.PRUNED]),
                str(count[TrialState.RUNNING]),
                str(count[TrialState.WAITING]),
                str(count[TrialState.FAIL]),
                f"{best.value:.4f} (#{best.number})" if best else "-",
                final_text,
                note,
            ]
        )
    if not rows:
        print("no studies in this storage")
        return 0
    print(
        format_table(
            [
                "study",
                "finished",
                "complete",
                "pruned",
                "running",
                "waiting",
                "failed",
                "best val_acc",
                "final test_acc",
                "note",
            ],
            rows,
        )
    )
    return 0
