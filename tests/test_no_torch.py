"""The commands that only read a study start without torch (seconds of import on a busy machine)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.study_scale import STUDY, build

RUN = """
import json, sys
from search.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""

DASHBOARD = """
import io, json, sys
from wsgiref.util import setup_testing_defaults
from search.cli.dashboard import make_app
app = make_app(sys.argv[1], sys.argv[2])
environ = {"PATH_INFO": "/api/studies/1", "QUERY_STRING": "after=0", "REQUEST_METHOD": "GET"}
setup_testing_defaults(environ)
status = []
body = b"".join(app(environ, lambda s, h, exc_info=None: status.append(s) or io.BytesIO().write))
print(json.dumps({"code": 0 if status[0].startswith("200") else 1, "torch": "torch" in sys.modules,
                  "trials": len(json.loads(body)["trials"])}))
"""


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("study") / "study.db"
    build(path, 30)
    return f"sqlite:///{path}"


def run_python(code: str, *args: str) -> dict:
    import json

    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", ["status", "report"])
def test_read_only_command_runs_without_importing_torch(command, study_url, tmp_path):
    extra = ["--out", str(tmp_path / "report")] if command == "report" else []
    result = run_python(RUN, command, "--storage", study_url, "--study", STUDY, *extra)
    assert result == {"code": 0, "torch": False}


def test_dashboard_serves_the_study_without_importing_torch(study_url, tmp_path):
    result = run_python(DASHBOARD, study_url, str(tmp_path / "artifacts"))
    assert result == {"code": 0, "torch": False, "trials": 30}
