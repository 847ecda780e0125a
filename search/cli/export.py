"""`alexsearch export`: write the study's best complete trial(s) as config files for `alexsearch final`."""

from __future__ import annotations

import argparse
from pathlib import Path

from search.cli.args import add_storage_args, positive_int
from storage.study import load_study, open_storage, quiet_optuna

HELP = "write the best complete trial's config (epochs = its best epoch) as JSON for `alexsearch final`"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=HELP, description=HELP)
    add_storage_args(p)
    p.add_argument("--out", default="best.json", help="file for the best trial (default: best.json)")
    p.add_argument("--top", type=positive_int, default=1,
                   help="export the best K trials: rank 1 to --out, rank r to OUT-r.json next to it (default: 1)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from search.export import export_best, rank_path  # torch: the trial configs are checked against the models

    quiet_optuna()
    study = load_study(open_storage(args.storage, create=False), args.study)  # read-only: creates nothing
    exports = export_best(study, args.storage, args.top)
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for config in exports:
        p = config.provenance
        path = rank_path(out, p.rank)
        path.write_text(config.to_json() + "\n")
        lines.append(f"wrote {path}: rank {p.rank}, trial {p.trial}, val_acc {p.val_acc:.4f}, "
                     f"epochs {config.trial_config.train.epochs} (best of {p.search_epochs})")
    print(exports[0].to_json())
    print("\n".join(lines))
    if len(exports) < args.top:
        print(f"the study has only {len(exports)} complete trial(s); wrote {len(exports)} of --top {args.top}")
    return 0
