"""summary.md and index.html: the best config, every trial, how many were pruned or stopped, epochs trained."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from search.trials import record
from search.trials.record import epochs_trained
from search.workers.events import fmt_params
from storage.optuna_private import fixed_params


@dataclass(frozen=True)
class Output:
    file: str  # name inside the report folder
    title: str
    drawn: bool
    note: str = ""  # what it shows, or why it is not drawn yet


@dataclass
class Summary:
    study: str
    source: str  # the storage URL, password removed
    written_at: str  # UTC
    search: dict[str, Any]  # the study's search_config user attr ({} for a study made elsewhere)
    counts: dict[str, int]
    epochs: int
    best: FrozenTrial | None
    trials: list[FrozenTrial]
    outputs: list[Output] = field(default_factory=list)
    data: str = ""  # the study and its data size (search.report.trials.data_caption)
    final: str | None = None  # the final run's test accuracy line, when the study has one

    def headline(self) -> list[str]:
        c = self.counts
        s = self.search
        lines = []
        if s:
            data = s.get("data", {})
            lines.append(
                f"search: strategy {s.get('strategy')}, sampler {s.get('sampler')}, pruner {s.get('pruner')}, "
                f"patience {s.get('patience')}, {s.get('epochs')} epochs per trial, budget {s.get('trials')} "
                f"trials, train size {data.get('train_size') or 'all'}, val size {data.get('val_size')}"
            )
        lines.append(
            f"trials: {len(self.trials)} - complete {c['complete']} (stopped early by patience "
            f"{c['stopped']}), pruned {c['pruned']} (skipped as duplicates {c['duplicate']}), running "
            f"{c['running']}, waiting {c['waiting']}, failed {c['fail']}"
        )
        lines.append(f"epochs trained: {self.epochs} (one per validation accuracy reported, over all trials)")
        if self.data:
            lines.append(f"data: {self.data}")
        if self.final:
            lines.append(self.final)
        if c["running"] or c["waiting"]:
            lines.append("the study is still running: this report is a snapshot; run it again for the rest")
        return lines

    def best_lines(self) -> list[str]:
        b = self.best
        if b is None:
            return ["no trial has completed yet"]
        return [
            f"trial {b.number}: val_acc {b.value:.4f} at epoch {record.best_epoch(b, '?')} of {epochs_trained(b)}",
            f"params: {fmt_params(b.params)}",
        ]

    def best_config_json(self) -> str | None:
        if self.best is None or record.CONFIG not in self.best.user_attrs:
            return None
        return json.dumps(self.best.user_attrs[record.CONFIG], indent=2)


def trial_row(t: FrozenTrial) -> list[str]:
    value = f"{t.value:.4f}" if t.value is not None else "-"
    if t.value is None and t.intermediate_values:
        value = f"({max(t.intermediate_values.values()):.4f})"  # best so far of a pruned or running trial
    state = t.state.name + (" (stopped)" if record.STOPPED_REASON in t.user_attrs else "")
    note = record.note(t)
    return [
        str(t.number),
        state,
        value,
        str(record.best_epoch(t, "-")),
        str(epochs_trained(t)),
        fmt_params(t.params) or fmt_params(fixed_params(t)),
        note,
    ]


HEADER = ["#", "state", "val_acc", "best epoch", "epochs", "params", "note"]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def write_markdown(s: Summary, path: Path) -> Path:
    out = [f"# Study `{s.study}`", "", f"Report written {s.written_at} from `{s.source}` (opened read-only).", ""]
    out += [f"- {line}" for line in s.headline()]
    out += ["", "## Best trial", ""] + [f"- {line}" for line in s.best_lines()]
    config = s.best_config_json()
    if config:
        out += ["", "```json", config, "```"]
    out += ["", "## Figures", "", "| file | what | note |", "| --- | --- | --- |"]
    for o in s.outputs:
        link = f"[{o.file}]({o.file})" if o.drawn else f"{o.file} (not drawn)"
        out.append(f"| {link} | {_md_cell(o.title)} | {_md_cell(o.note)} |")
    out += ["", "## Trials", "", "| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    out += ["| " + " | ".join(_md_cell(c) for c in trial_row(t)) + " |" for t in s.trials]
    path.write_text("\n".join(out) + "\n")
    return path


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#a60}pre{background:#f6f6f6;padding:0.6em}"""


def write_index(s: Summary, path: Path) -> Path:
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(s.study)} report</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Study <code>{e(s.study)}</code></h1>",
        f"<p>Report written {e(s.written_at)} from <code>{e(s.source)}</code> (opened read-only).</p>",
        "<ul>" + "".join(f"<li>{e(line)}</li>" for line in s.headline()) + "</ul>",
        "<h2>Best trial</h2><ul>" + "".join(f"<li>{e(line)}</li>" for line in s.best_lines()) + "</ul>",
    ]
    config = s.best_config_json()
    if config:
        parts.append(f"<pre>{e(config)}</pre>")
    parts.append("<h2>Interactive plots (plotly)</h2><ul>")
    for o in s.outputs:
        if o.file.endswith(".html"):
            item = (
                f"<a href='{e(o.file)}'>{e(o.title)}</a>"
                if o.drawn
                else (f"{e(o.title)}: <span class='note'>not drawn: {e(o.note)}</span>")
            )
            parts.append(f"<li>{item}</li>")
    parts.append("</ul><h2>Figures</h2>")
    for o in s.outputs:
        if not o.file.endswith(".html"):
            parts.append(f"<h3>{e(o.title)}</h3>")
            shown = (
                f"<img src='{e(o.file)}' alt='{e(o.title)}'>"
                if not o.file.endswith(".pdf")
                else f"<a href='{e(o.file)}'>{e(o.file)}</a>"
            )
            parts.append(f"<p>{e(o.note)}</p>{shown}" if o.drawn else f"<p class='note'>not drawn: {e(o.note)}</p>")
    parts.append("<h2>Trials</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in trial_row(t)) + "</tr>" for t in s.trials]
    parts.append("</table></body></html>")
    path.write_text("\n".join(parts) + "\n")
    return path
