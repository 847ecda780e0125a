"""The tasks' names and one-line descriptions, read from model/tasks/ without importing the tasks (or torch).

A task module defines a class with a `name = "..."` attribute; the first line of the module's docstring says
what it trains. tests/test_help.py checks this listing against model.tasks.TASKS.
"""

from __future__ import annotations

import ast
from pathlib import Path

TASKS_DIR = Path(__file__).with_name("tasks")


def _task_name(tree: ast.Module) -> str | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if (
                    isinstance(item, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "name" for t in item.targets)
                    and isinstance(item.value, ast.Constant)
                    and isinstance(item.value.value, str)
                ):
                    return item.value.value
    return None


def task_summaries() -> dict[str, str]:
    """Task name -> the first line of its module's docstring, in name order."""
    out = {}
    for path in sorted(TASKS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        name = _task_name(tree)
        if name is not None:
            doc = (ast.get_docstring(tree) or "").strip()
            out[name] = doc.splitlines()[0] if doc else ""
    return dict(sorted(out.items()))
