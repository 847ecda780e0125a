"""`alexsearch dashboard`: its errors in-process, then a real dashboard watched live and in headless Chromium.

The slow part: a real tiny study, the dashboard serving it in a subprocess, a second search running
against the same SQLite file while a client polls the dashboard's API, then Debian's Chromium loading
the study page (DOM dump and a screenshot under test-artifacts/).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from search.cli import dashboard, main
from storage.study import open_storage
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
# The live search: the MLP task, with epochs of 60,000 points (about 0.6 s each on a quiet machine) so that a
# poll can catch a running trial that has reported an epoch.
# 16 epochs of ~0.3 s: a trial runs with epochs reported for longer than optuna-dashboard's 2 s trial cache, so a
# poll sees it. 8 epochs were enough while a new best spent ~0.6 s importing matplotlib, and then not always.
QUICK = ["--task", "mlp-synth", "--epochs", "16", "--train-size", "60000", "--val-size", "2000", "--device", "cpu"]
TRIALS = 3
CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and os.access(p, os.X_OK)
    ),
    None,
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--window-size=1280,900",
    "--virtual-time-budget=20000",
]


def empty_study(folder: Path, name: str = "alexnet-cifar10") -> str:
    """A study with no trials yet, as `alexsearch search` creates it before its first trial."""
    url = f"sqlite:///{folder / 'study.db'}"
    optuna.create_study(study_name=name, storage=open_storage(url, create=True), direction="maximize")
    return url


def test_missing_database_is_an_error_and_is_not_created(tmp_path, capsys):
    db = tmp_path / "none.db"
    assert main(["dashboard", "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "alexsearch dashboard: error: --storage: no database at" in err
    assert not db.exists() and list(tmp_path.iterdir()) == []


def test_missing_study_and_bad_port_are_one_line_errors(tmp_path, capsys):
    url = empty_study(tmp_path)
    capsys.readouterr()
    assert main(["dashboard", "--storage", url, "--study", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "alexsearch dashboard: error: --study: no study named 'nope' in this storage (studies: alexnet-cifar10)\n"
    )
    with pytest.raises(SystemExit) as e:
        main(["dashboard", "--storage", url, "--port", "70000"])
    assert e.value.code == 2 and "argument --port: must be a port number 0-65535" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", "--storage", url, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"alexsearch dashboard: error: --port: port {port} on 127.0.0.1 is already in use; pick another with --port\n"
    )


def test_prints_the_study_url_and_warns_only_on_a_public_interface(tmp_path, capsys, monkeypatch):
    url = empty_study(tmp_path)
    monkeypatch.setattr(dashboard.ThreadedWSGIServer, "serve_forever", lambda self: None)  # bind, print, return
    capsys.readouterr()
    assert main(["dashboard", "--storage", url, "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(
        r"dashboard for sqlite:///\S+, study 'alexnet-cifar10': "
        r"http://127\.0\.0\.1:\d+/dashboard/studies/1\n",
        out,
    )
    assert "warning" not in err
    assert main(["dashboard", "--storage", url, "--port", "0", "--host", "0.0.0.0"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "binding 0.0.0.0" in warnings[0] and "127.0.0.1" in warnings[0]
    assert dashboard.is_loopback("localhost") and dashboard.is_loopback("::1")
    assert not dashboard.is_loopback("192.168.1.5") and not dashboard.is_loopback("gpu-box")


# --- live: a real dashboard while a real search writes the same database -------------------------------------


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """`alexsearch dashboard` serving a new study while a search process fills it and a client polls the API."""
    folder = tmp_path_factory.mktemp("live")
    url = empty_study(folder, "mlp-synth")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = folder / "dashboard.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "search.cli", "dashboard", "--storage", url, "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    search = None
    try:
        page = wait_for(
            lambda: re.search(r"http://\S+/dashboard/studies/\d+", log.read_text()), 90, f"the dashboard's URL in {log}"
        ).group(0)
        api = page.replace("/dashboard/studies/", "/api/studies/")
        search = subprocess.Popen(
            [sys.executable, "-m", "search.cli", "search", "--storage", url, "--trials", str(TRIALS), *QUICK],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seen, polls = [], 0
        while search.poll() is None:  # poll as hard as a browser tab would, and harder
            trials = get_json(api)["trials"]
            polls += 1
            seen.append([(t["number"], t["state"], len(t["intermediate_values"])) for t in trials])
            time.sleep(0.2)
        search_out = search.communicate()[0]
        yield {
            "url": url,
            "db": folder / "study.db",
            "page": page,
            "api": api,
            "seen": seen,
            "polls": polls,
            "search_rc": search.returncode,
            "search_out": search_out,
            "log": log,
            "server": server,
        }
    finally:
        for proc in (search, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


@pytest.mark.slow
def test_dashboard_reads_never_fail_the_search_and_show_it_live(live):
    assert live["search_rc"] == 0, live["search_out"][-2000:]
    assert live["server"].poll() is None, live["log"].read_text()[-2000:]  # still serving
    con = sqlite3.connect(live["db"])
    states = [r[0] for r in con.execute("SELECT state FROM trials ORDER BY number")]
    assert len(states) >= TRIALS and set(states) <= {"COMPLETE", "PRUNED"}, states  # skipped duplicates add some
    seen = live["seen"]
    print(f"polled {live['polls']} times while the search ran")
    assert live["polls"] >= 10
    counts = [len(s) for s in seen]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] >= 2  # trials appeared while we watched
    # an epoch's validation accuracy appeared while its trial was still running
    assert any(state == "Running" and steps >= 1 for s in seen for _, state, steps in s), seen[-1]
    # optuna-dashboard refreshes a running trial from its in-memory cache a few seconds late; wait for it
    want = [s.capitalize() for s in states]
    deadline = time.monotonic() + 30
    final = get_json(live["api"])["trials"]
    while [t["state"] for t in final] != want and time.monotonic() < deadline:
        time.sleep(0.5)
        final = get_json(live["api"])["trials"]
    assert [t["state"] for t in final] == want
    assert all(len(t["intermediate_values"]) >= 1 for t in final if t["state"] == "Complete")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None  # its callers skip without it
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=90
    )


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium; .ci/run does)")
def test_chromium_shows_the_study_its_trials_the_history_chart_and_the_note(live, tmp_path):
    assert live["search_rc"] == 0
    states = [s for (s,) in sqlite3.connect(live["db"]).execute("SELECT state FROM trials")]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-study.png"
    shot.unlink(missing_ok=True)
    study_page = chromium("--dump-dom", f"--screenshot={shot}", live["page"], profile=tmp_path / "p1")
    assert study_page.returncode == 0, study_page.stderr[-2000:]
    dom = study_page.stdout
    text = visible_text(dom)
    assert "mlp-synth" in text and "History" in text and "Intermediate values" in text
    assert "Study Artifacts" in text  # served with the artifact store
    history = dom[dom.index('id="plot-history"') :]
    history = history[: history.find("js-plotly-plot", 40)]  # up to the next chart
    points = history.count('class="point"')
    svgs, plots = dom.count("<svg"), dom.count('class="main-svg"')
    assert points >= states.count("COMPLETE") >= 1 and plots >= 2
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one

    trials_text = visible_text(chromium("--dump-dom", live["page"] + "/trials", profile=tmp_path / "p2").stdout)
    assert f"{len(states)} Trials" in trials_text, trials_text[:2000]
    for attr in ("val_acc", "train_acc", "best_epoch", "epoch_seconds", "images_per_s"):
        assert attr in trials_text

    note_text = visible_text(chromium("--dump-dom", live["page"] + "/note", profile=tmp_path / "p3").stdout)
    for part in (
        "Search space",
        "lr in [0.0001, 0.1] log",
        "Data split",
        "training: 60,000 images",
        "Budget and rules",
        "Device and versions",
        "device: cpu",
    ):
        assert part in note_text, part
    print(
        f"\nbrowser saw: 'mlp-synth', '{len(states)} Trials', the study note; {svgs} <svg>, "
        f"{plots} plotly main-svg, {points} points in the history chart ({states.count('COMPLETE')} complete "
        f"trials); screenshot {shot}"
    )
