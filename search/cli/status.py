"""`alexsearch status`: the study's trials and its best trial."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from search.cli.args import add_storage_args

if TYPE_CHECKING:
    import optuna

HELP = "print the study's trials (number, state, params, value, best epoch) and the best trial"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help=HELP, description=HELP)
    add_storage_args(p)
    p.add_argument(
        "--artifacts",
        default=None,
        help="the search's artifacts folder, to report its checkpoints (default: the one the study was searched with)",
    )
    p.set_defaults(run=run)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def trial_rows(study: optuna.Study) -> list[list[str]]:
    from search.trials import record

    rows = []
    for t in study.get_trials(deepcopy=False):
        params = " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        value = f"{t.value:.4f}" if t.value is not None else "-"
        if value == "-" and t.intermediate_values:
            value = f"({max(t.intermediate_values.values()):.4f})"
        rows.append([str(t.number), t.state.name, value, str(record.best_epoch(t, "-")), params, record.note(t)])
    return rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from search.trials.record import best_line
    from search.workers.launchers.slurm import job_status_line
    from storage.study import load_study, open_storage, quiet_optuna

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
    print(checkpoints_line(study, args.storage, args.artifacts))
    slurm = job_status_line(study)  # only for a study launched with --launcher slurm
    if slurm is not None:
        print(slurm)
    return 0


def checkpoints_line(study: optuna.Study, storage_url: str, artifacts: str | None) -> str:
    """How much disk the study's checkpoints take (an AlexNet checkpoint with Adam is 279 MB)."""
    from search.trials import record
    from storage.artifacts import artifact_dir, checkpoint_dir
    from storage.checkpoints import CheckpointStore

    artifacts = artifacts or study.user_attrs.get(record.SEARCH_CONFIG, {}).get("artifacts")
    folder = checkpoint_dir(artifact_dir(storage_url, artifacts), study.study_name)
    files, size = CheckpointStore(folder).held_bytes()
    return f"checkpoints: {files} files, {size / 1e6:.1f} MB ({size:,} bytes) in {folder}"
