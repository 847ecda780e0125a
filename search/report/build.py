"""Write a study's whole report into one folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import optuna

from search.report.curves import draw_param_curves, trials_for
from search.report.figures import NeedsMoreTrials
from search.report.optuna_plots import draw_history, draw_importance, importances, plotly_figures, write_html
from search.report.snapshot import StudySnapshot
from search.report.summary import Output, Summary, write_index, write_markdown
from search.report.trials import best_trial, searched_params, state_counts, total_epochs

FIXED_FILES = ("history.png", "importance.png", "history.html", "intermediate.html", "parallel.html",
               "importance.html", "summary.md", "index.html")


def _remove_old(out: Path) -> None:
    """A figure that cannot be drawn now must not survive from an earlier report into this one."""
    for p in [*out.glob("curves-*.png"), *(out / f for f in FIXED_FILES)]:
        if p.is_file():
            p.unlink()


def _try(file: str, title: str, draw: Callable[[], object], note: str = "") -> Output:
    try:
        draw()
    except NeedsMoreTrials as e:
        return Output(file, title, drawn=False, note=str(e))
    return Output(file, title, drawn=True, note=note)


def write_report(study: optuna.Study, out: Path, source: str = "") -> Summary:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    _remove_old(out)
    study = StudySnapshot(study)  # the one read of the study: every file below draws from it
    trials = study.get_trials()
    outputs = []
    for param in searched_params(study, trials):
        file = f"curves-{param}.png"
        chosen, caption = trials_for(param, trials, study.user_attrs)
        outputs.append(_try(file, f"{param}: training and validation accuracy per epoch",
                            lambda p=param, c=chosen, cap=caption, f=file: draw_param_curves(p, c, cap, out / f),
                            caption))
    outputs.append(_try("history.png", "optimization history", lambda: draw_history(trials, out / "history.png"),
                        "validation accuracy of each trial and the best so far"))
    outputs.append(_try("importance.png", "parameter importance",
                        lambda: draw_importance(importances(study, trials), out / "importance.png"),
                        "Optuna's PED-ANOVA importance for validation accuracy"))
    for file, (title, build) in plotly_figures(study, trials).items():
        outputs.append(_try(file, title, lambda b=build, f=file: write_html(b(), out / f)))
    summary = Summary(study=study.study_name, source=source, search=study.user_attrs.get("search_config", {}),
                      written_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), counts=state_counts(trials),
                      epochs=total_epochs(trials), best=best_trial(trials), trials=trials, outputs=outputs)
    write_markdown(summary, out / "summary.md")
    write_index(summary, out / "index.html")
    return summary
