"""The cheap reads: finished trials by one count query, the last N trials, counts by state, and the worker
budget and the parent's progress poll built on them, on SQLite and PostgreSQL."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.settings import SearchConfig
from search.trials.record import FINISHED, finished_count, is_duplicate
from search.workers.study_count import StudyCount
from storage.optuna_private import study_system_attr
from storage.study import open_storage


def make_study(url: str) -> optuna.Study:
    study = optuna.create_study(study_name="reads", storage=open_storage(url, create=True), direction="maximize")
    for i in range(12):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        if i % 4 == 3:
            trial.set_user_attr("duplicate_of", i - 1)
            study.tell(trial, state=TrialState.PRUNED)
        elif i % 4 == 2:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, i / 12)
    study.ask()  # one RUNNING trial
    study.enqueue_trial({"x": 0.5})  # one WAITING trial
    return study


def test_counts_and_last_trials_match_a_full_load(storage_url):
    study = make_study(storage_url)
    storage = open_storage(storage_url, create=False)
    loaded = optuna.load_study(study_name="reads", storage=storage)
    everything = loaded.get_trials(deepcopy=False)
    expected = sum(not is_duplicate(t) for t in everything if t.state in FINISHED)
    assert finished_count(loaded) == expected == 9  # 6 complete + 3 pruned; 3 duplicates left out
    assert StudyCount(SearchConfig(storage=storage_url, study="reads"))() == expected  # the parent's poll
    assert storage.state_counts(study._study_id) == {
        state: sum(t.state == state for t in everything) for state in {t.state for t in everything}
    }
    last = storage.last_trials(study._study_id, 5)
    assert [t.number for t in last] == [t.number for t in everything][-5:]
    assert [(t.params, t.state, t.user_attrs) for t in last] == [
        (t.params, t.state, t.user_attrs) for t in everything[-5:]
    ]
    assert storage.last_trials(study._study_id, 100) == sorted(everything, key=lambda t: t.number)


def test_progress_poll_of_a_study_not_made_yet_is_none(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_storage(url, create=True)
    assert StudyCount(SearchConfig(storage=url, study="nope"))() is None


def test_one_study_system_attr_reads_as_optunas_full_read_does(storage_url):
    study = make_study(storage_url)
    storage, sid = study._storage, study._study_id
    storage.set_study_system_attr(sid, "flag", {"at": "now", "by": "me"})
    storage.set_study_system_attr(sid, "cleared", None)
    full = storage.get_study_system_attrs(sid)
    for key in ("flag", "cleared", "never set"):
        assert study_system_attr(storage, sid, key) == full.get(key)
    assert study_system_attr(storage, sid, "flag") == {"at": "now", "by": "me"}
    memory = optuna.storages.InMemoryStorage()  # not an RDBStorage: Optuna's own read
    mid = memory.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "m")
    memory.set_study_system_attr(mid, "flag", 1)
    assert study_system_attr(memory, mid, "flag") == 1 and study_system_attr(memory, mid, "other") is None
