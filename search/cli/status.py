"""`alexsearch status`: the study's trials and its best trial."""

from __future__ import annotations

import argparse

import optuna

from search.cli.args import add_storage_args
from search.workers.loop import best_line
from storage.study import load_study, open_storage, quiet_optuna

HELP = "print the study's trials (number, state, params, value, best epoch) and the best trial"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help=HELP, description=HELP)
    add_storage_args(p)
    p.set_defaults(run=run)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def trial_rows(study: optuna.Study) -> list[list[str]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        params = " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        value = f"{t.value:.4f}" if t.value is not None else "-"
        if value == "-" and t.intermediate_values:
            value = f"({max(t.intermediate_values.values()):.4f})"
        note = t.user_attrs.get("pruned_reason") or t.user_attrs.get("stopped_reason") or ""
        rows.append([str(t.number), t.state.name, value, str(t.user_attrs.get("best_epoch", "-")), params, note])
    return rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    study = load_study(open_storage(args.storage, create=False), args.study)
    rows = trial_rows(study)
    print(f"study {study.study_name}: {len(rows)} trials")
    if rows:
        print(format_table(["#", "state", "val_acc", "best_epoch", "params", "note"], rows))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[1]] = counts.get(r[1], 0) + 1
    print("states: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    print(best_line(study))
    return 0
