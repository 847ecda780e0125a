"""The tasks' names and one-line descriptions, read from model/tasks/ without importing the tasks (or torch).

A task module `model/tasks/foo_bar.py` registers the task `foo-bar`; the first line of its docstring says
what it trains. tests/test_help.py checks this listing against the registry.
"""

from __future__ import annotations

import ast
from pathlib import Path

TASKS_DIR = Path(__file__).with_name("tasks")


def task_summaries() -> dict[str, str]:
    """Task name -> the first line of its module's docstring, in name order."""
    out = {}
    for path in sorted(TASKS_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out[path.stem.replace("_", "-")] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out
