"""Write a study's whole report into one folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import optuna

from search.errors import UsageError
from search.report.curves import draw_param_curves, trials_for
from search.report.figures import DEFAULT_OUTPUT, FORMATS, FigureOutput, NeedsMoreTrials, figure_output
from search.report.optuna_plots import draw_history, draw_importance, importances, plotly_figures, write_html
from search.report.snapshot import StudySnapshot
from search.report.summary import Output, Summary, write_index, write_markdown
from search.report.trials import best_trial, data_caption, final_line, searched_params, state_counts, total_epochs
from search.trials import record

FIGURES = ("history", "importance")  # and curves-PARAM, in every format
FIXED_FILES = ("history.html", "intermediate.html", "parallel.html", "importance.html", "summary.md", "index.html")


def _write_figure(build: Callable[[], object], path: Path, context: str) -> Path:
    return write_html(build(), path, context)


def _remove_old(out: Path) -> None:
    """A figure that cannot be drawn now must not survive from an earlier report into this one."""
    figures = [p for fmt in FORMATS for p in (*out.glob(f"curves-*.{fmt}"), *(out / f"{f}.{fmt}" for f in FIGURES))]
    for p in [*figures, *(out / f for f in FIXED_FILES)]:
        if p.is_file():
            p.unlink()


def _try(file: str, title: str, draw: Callable[[], object], note: str = "") -> Output:
    try:
        draw()
    except NeedsMoreTrials as e:
        return Output(file, title, drawn=False, note=str(e))
    return Output(file, title, drawn=True, note=note)


def write_report(study: optuna.Study, out: Path, source: str = "", output: FigureOutput = DEFAULT_OUTPUT) -> Summary:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    _remove_old(out)
    study = StudySnapshot(study)  # the one read of the study: every file below draws from it
    trials = study.get_trials()
    attrs = study.user_attrs
    context = data_caption(study.study_name, attrs)
    ext = output.main
    outputs = []
    with figure_output(output):
        for param in searched_params(study, trials):
            file = f"curves-{param}.{ext}"
            chosen, caption = trials_for(param, trials, attrs)
            outputs.append(
                _try(
                    file,
                    f"{param}: training and validation accuracy per epoch",
                    partial(draw_param_curves, param, chosen, caption, out / file, context),
                    caption,
                )
            )
        outputs.append(
            _try(
                f"history.{ext}",
                "optimization history",
                lambda: draw_history(trials, out / f"history.{ext}", context),
                "validation accuracy of each trial and the best so far",
            )
        )
        outputs.append(
            _try(
                f"importance.{ext}",
                "parameter importance",
                lambda: draw_importance(importances(study, trials), out / f"importance.{ext}", context),
                "Optuna's PED-ANOVA importance for validation accuracy",
            )
        )
    for file, (title, build) in plotly_figures(study, trials).items():
        outputs.append(_try(file, title, partial(_write_figure, build, out / file, context)))
    summary = Summary(
        study=study.study_name,
        source=source,
        search=attrs.get(record.SEARCH_CONFIG, {}),
        written_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        counts=state_counts(trials),
        epochs=total_epochs(trials),
        best=best_trial(trials),
        trials=trials,
        outputs=outputs,
        data=context,
        final=final_line(attrs),
    )
    write_markdown(summary, out / "summary.md")
    write_index(summary, out / "index.html")
    return summary
