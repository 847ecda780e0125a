"""`alexsearch export`: write the study's best complete trial(s) as config files for `alexsearch final`."""

from __future__ import annotations

import argparse
from pathlib import Path

from search.cli.args import add_storage_args, positive_int
from search.errors import UsageError

HELP = "write the best complete trial's config (epochs = its best epoch) as JSON for `alexsearch final`"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=HELP, description=HELP)
    add_storage_args(p)
    p.add_argument("--out", default="best.json", help="file for the best trial (default: best.json)")
    p.add_argument(
        "--top",
        type=positive_int,
        default=1,
        help="export the best K trials: rank 1 to --out, rank r to OUT-r.json next to it (default: 1)",
    )
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from search.export import export_best, rank_path
    from storage.study import load_study, open_storage, quiet_optuna

    quiet_optuna()
    study = load_study(open_storage(args.storage, create=False), args.study)  # read-only: creates nothing
    exports = export_best(study, args.storage, args.top)
    out = Path(args.out).expanduser()
    paths = [rank_path(out, rank) for rank in range(1, len(exports) + 1)]  # as export_best numbers them
    existing = [p for p in paths if p.exists()]
    if existing and not args.force:  # checked before any file is written: all or nothing
        raise UsageError(f"--out: {existing[0]} already exists; pick another file, or pass --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for config, path in zip(exports, paths, strict=True):
        p = config.provenance
        path.write_text(config.to_json() + "\n")
        lines.append(
            f"wrote {path}: rank {p.rank}, trial {p.trial}, val_acc {p.val_acc:.4f}, "
            f"epochs {config.trial_config.train.epochs} (best of {p.search_epochs})"
        )
    print(exports[0].to_json())
    print("\n".join(lines))
    if len(exports) < args.top:
        print(f"the study has only {len(exports)} complete trial(s); wrote {len(exports)} of --top {args.top}")
    return 0
