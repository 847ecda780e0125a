"""`--help` answers at once: building the parser imports no torch (nor Optuna, nor SQLAlchemy)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model.task_catalog import task_summaries
from model.tasks import all_tasks
from search.cli import COMMANDS, build_parser
from search.cli.args import literal_choices
from search.cli.search import PRUNER_HELP, SAMPLER_HELP, STRATEGY_HELP
from search.settings import SearchConfig

HEAVY = ("torch", "optuna", "sqlalchemy", "numpy", "matplotlib")
PROBE = """
import contextlib, io, json, sys
from search.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(%r)))
print(json.dumps({"code": code, "heavy": heavy, "help": out.getvalue()}))
"""


def help_of(*argv: str) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", PROBE % json.dumps(HEAVY), *argv, "--help"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def command_names() -> list[str]:
    return [c.__name__.rsplit(".", 1)[-1] for c in COMMANDS]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        *(
            [name]
            for name in ["search", "worker", "stop", "status", "studies", "dashboard", "export", "final", "report"]
        ),
    ],
)
def test_help_imports_no_torch(argv):
    result = help_of(*argv)
    assert result["code"] == 0
    assert result["heavy"] == [], f"`alexsearch {' '.join(argv)} --help` imported {result['heavy']}"


def test_every_command_is_checked():
    assert sorted(command_names()) == sorted(
        ["search", "worker", "stop", "status", "studies", "dashboard", "export", "final", "report"]
    )


def test_help_explains_each_task_sampler_and_pruner_in_a_line():
    text = help_of("search")["help"]
    for name in [*all_tasks(), *SAMPLER_HELP, *PRUNER_HELP, *STRATEGY_HELP]:
        assert any(line.strip().startswith(name + " ") for line in text.splitlines()), name
    assert "tasks (--task):" in help_of()["help"]  # the top-level help too


def test_the_help_lists_exactly_the_choices_the_settings_allow():
    assert tuple(SAMPLER_HELP) == literal_choices(SearchConfig, "sampler")
    assert tuple(PRUNER_HELP) == literal_choices(SearchConfig, "pruner")
    assert tuple(STRATEGY_HELP) == literal_choices(SearchConfig, "strategy")


def test_task_catalog_matches_the_registry_without_importing_it():
    summaries = task_summaries()
    assert sorted(summaries) == sorted(all_tasks())
    assert all(summaries.values())  # every task module has a docstring


def test_parser_builds_in_process():
    assert build_parser().parse_args(["stop", "--study", "s"]).study == "s"
