"""`alexsearch report`: figures, Optuna plots and a summary of a study, or several studies compared.

Reads the storage only (never writes to it, never creates it) and never touches the data: every
number comes from what the trials recorded. Works while workers are still running.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from search.cli.args import add_storage_args, positive_int
from search.errors import UsageError

HELP = "write learning curves per parameter, Optuna plots, summary.md and index.html; or compare studies"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help=HELP, description=HELP)
    add_storage_args(p)
    p.add_argument("--out", default="report", help="folder for the report's files (default: ./report)")
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="STUDY",
        default=None,
        help="instead: draw these studies' best validation accuracy against epochs trained, "
        "in one figure (compare.png, compare.md)",
    )
    p.add_argument(
        "--format",
        default="png",
        metavar="FORMATS",
        help="figure formats, comma-separated: png, svg, pdf (default: png; index.html shows png, else svg)",
    )
    p.add_argument("--dpi", type=positive_int, default=100, help="resolution of png figures (default: 100)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from search.report.build import write_report
    from search.report.compare import write_compare
    from search.report.figures import FigureOutput, NeedsMoreTrials, figure_output
    from storage.study import load_study, open_storage, quiet_optuna
    from storage.url import redact

    output = FigureOutput(tuple(f.strip().lower() for f in args.format.split(",") if f.strip()), args.dpi)
    if args.compare is not None:
        if len(args.compare) < 2:
            raise UsageError(f"--compare: give two or more studies, got {len(args.compare)}")
        if args.study is not None:
            raise UsageError("--study: not used with --compare; name the studies after --compare")
    quiet_optuna()
    storage = open_storage(args.storage, create=False)
    out = Path(args.out)
    if args.compare is not None:
        studies = [load_study(storage, name) for name in args.compare]
        try:
            with figure_output(output):
                figure, lines = write_compare(studies, out)
        except NeedsMoreTrials as e:
            raise UsageError(f"--compare: {e}") from None
        print("\n".join(lines))
        print(f"wrote {figure} and {out / 'compare.md'}")
        return 0
    study = load_study(storage, args.study)
    summary = write_report(study, out, source=redact(args.storage), output=output)
    for line in summary.headline():
        print(line)
    print("best: " + "; ".join(summary.best_lines()))
    for o in summary.outputs:
        if not o.drawn:
            print(f"not drawn: {o.file}: {o.note}")
    drawn = sum(o.drawn for o in summary.outputs)
    print(f"wrote {drawn} figures, summary.md and index.html to {out}/")
    return 0
