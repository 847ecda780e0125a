"""The dashboard in a real browser (headless chromium over the DevTools protocol): every artifact it lists
downloads (issue 12, item 3), and it is read-only unless started with --allow-edits (item 5)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import optuna
import pytest
import torch

from search.study.best_artifacts import publish_if_best
from storage.artifacts import artifact_dir
from storage.study import open_storage, quiet_optuna
from tests.chromium_cdp import Chromium, chromium_path
from tests.helpers import ALEXSEARCH

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs chromium (apt-get install chromium)")


def make_study(db_url: str) -> int:
    """A study whose best changed three times, with a worse trial and a pruned one between."""
    quiet_optuna()
    study = optuna.create_study(study_name="s", storage=open_storage(db_url, create=True), direction="maximize")
    for value in (0.5, 0.7, 0.6, None, 0.9):
        trial = study.ask()
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        publish_if_best(
            study,
            trial,
            value,
            torch.nn.Linear(3, 2).state_dict(),
            {"train_acc": [value - 0.1, value], "val_acc": [value - 0.05, value]},
            artifact_dir(db_url),
        )
        study.tell(trial, value)
    return study._study_id


@pytest.fixture
def dashboard(db_url):
    """Start `alexsearch dashboard` on a free port; yields (start function); stops what it started."""
    started = []

    def start(*extra: str) -> str:
        proc = subprocess.Popen(
            [ALEXSEARCH, "dashboard", "--storage", db_url, "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started.append(proc)
        assert proc.stdout is not None and proc.stderr is not None  # both PIPE
        line = proc.stdout.readline()
        url = re.search(r"(http://\S+)", line)
        assert url, line + proc.stderr.read()
        return url[1].split("/dashboard")[0]

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path):
    chrome = Chromium(tmp_path / "profile")
    yield chrome
    chrome.close()


def open_study_page(browser: Chromium, base: str, study_id: int) -> str:
    tab = browser.open(f"{base}/dashboard/studies/{study_id}")
    browser.wait_for(tab, "document.body && document.body.innerText.includes('Trial')", timeout=90)
    return tab


def test_every_artifact_the_dashboard_lists_downloads(db_url, dashboard, browser):
    study_id = make_study(db_url)
    base = dashboard()
    tab = open_study_page(browser, base, study_id)
    # What the page lists: the study detail its own JS fetches and renders.
    detail = browser.evaluate(tab, f"fetch('/api/studies/{study_id}').then(r => r.json())")
    urls = [f"/artifacts/{study_id}/{a['artifact_id']}" for a in detail["artifacts"]]
    urls += [
        f"/artifacts/{study_id}/{t['trial_id']}/{a['artifact_id']}" for t in detail["trials"] for a in t["artifacts"]
    ]
    names = [a["filename"] for a in detail["artifacts"]] + [
        a["filename"] for t in detail["trials"] for a in t["artifacts"]
    ]
    statuses = browser.evaluate(tab, f"Promise.all({json.dumps(urls)}.map(u => fetch(u).then(r => r.status)))")
    print(dict(zip(names, statuses, strict=True)))
    assert "trial-4-weights.pt" in names and "trial-0-weights.pt" not in names  # only the current best's
    assert sorted(n for n in names if n.endswith("curve.svg")) == [
        "trial-0-curve.svg",
        "trial-1-curve.svg",
        "trial-4-curve.svg",
    ]
    assert statuses == [200] * len(urls)


@pytest.mark.parametrize("allow_edits", [False, True])
def test_delete_is_refused_unless_edits_are_allowed(allow_edits, db_url, dashboard, browser):
    study_id = make_study(db_url)
    base = dashboard(*(["--allow-edits"] if allow_edits else []))
    tab = open_study_page(browser, base, study_id)
    # The request the page's "Delete study" makes (optuna-dashboard's bundle: APIClient.deleteStudy).
    status, body = browser.evaluate(
        tab,
        f"""fetch('/api/studies/{study_id}', {{method: 'DELETE',
        headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({{remove_associated_artifacts: true}})}})
        .then(async r => [r.status, await r.text()])""",
    )
    after = browser.evaluate(tab, f"fetch('/api/studies/{study_id}').then(r => r.status)")
    note = browser.evaluate(
        tab,
        f"""fetch('/api/studies/{study_id}/note', {{method: 'PUT',
        headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({{version: 1, body: 'x'}})}})
        .then(r => r.status)""",
    )
    print(
        f"allow_edits={allow_edits}: DELETE -> {status} {body[:120]!r}; study afterwards -> {after}; note PUT -> {note}"
    )
    if allow_edits:
        assert status == 204 and after == 404
    else:
        assert status == 403 and "read-only" in json.loads(body)["reason"] and "--allow-edits" in body
        assert after == 200 and note == 403
        assert optuna.load_study(study_name="s", storage=open_storage(db_url, create=False)).trials
