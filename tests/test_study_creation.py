"""Study creation is one step (issue 14, class 4): the settings a study is created with (search_config and
space) are written together, by exactly one of several commands started at once; a study left half-made
by a kill is completed by the next command, not refused for ever."""

from __future__ import annotations

import subprocess
from collections import Counter

import optuna
import pytest

from model.errors import ConfigError
from search.settings import SearchConfig
from search.space.space import Space, load_space
from search.study.create import create_study
from storage.study import open_storage, quiet_optuna
from tests.helpers import ALEXSEARCH, ENV, forked_processes, mlp_args

ROUNDS = 6


def settings(url: str, study: str, epochs: int) -> SearchConfig:
    return SearchConfig(study=study, storage=url, task="mlp-synth", epochs=epochs)


def race(url: str, epochs: int, space: Space, barrier, results) -> None:
    """One of two processes: for each round, wait for the other one, then create the round's study. The space
    comes parsed from the test: parsing builds its models, which imports torch's compiler (a second a process)."""
    quiet_optuna()
    for round_ in range(ROUNDS):
        barrier.wait(timeout=120)
        try:
            create_study(settings(url, f"race-{round_}", epochs), space, 0)
            results.put((round_, epochs, "created or resumed"))
        except ConfigError as e:
            results.put((round_, epochs, str(e)))


@pytest.mark.slow
def test_of_two_creations_started_together_exactly_one_sets_the_settings(storage_url):
    space = load_space(None, "mlp-synth")
    with forked_processes(__name__) as ctx:
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=race, args=(storage_url, epochs, space, barrier, results)) for epochs in (2, 3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        assert [p.exitcode for p in procs] == [0, 0]
        outcomes: dict[int, list[tuple[int, str]]] = {}
        while not results.empty():
            round_, epochs, outcome = results.get()
            outcomes.setdefault(round_, []).append((epochs, outcome))
    storage = open_storage(storage_url, create=False)
    try:
        for round_ in range(ROUNDS):
            ok = [epochs for epochs, outcome in outcomes[round_] if outcome == "created or resumed"]
            refused = [outcome for _, outcome in outcomes[round_] if outcome != "created or resumed"]
            assert len(ok) == 1, f"round {round_}: {outcomes[round_]}"  # exactly one may use the study
            other = 5 - ok[0]
            assert refused == [
                f"--epochs: study 'race-{round_}' was created with {ok[0]}, not {other}; resume it "
                "with the same value, or start a new study with --study"
            ]
            stored = optuna.load_study(study_name=f"race-{round_}", storage=storage).user_attrs
            assert stored["search_config"]["epochs"] == ok[0] and "space" in stored
    finally:
        storage.engine.dispose()


def test_study_with_only_its_search_config_is_completed_not_refused(db_url):
    """What a kill (or a full disk) between the two writes of older versions left: search_config, no space."""
    quiet_optuna()
    space = load_space(None, "mlp-synth")
    s = settings(db_url, "half", 2)
    storage = open_storage(db_url, create=True)
    half = optuna.create_study(study_name="half", storage=storage, direction="maximize")
    half.set_user_attr("search_config", s.to_dict())
    study = create_study(s, space, 0)
    assert study.user_attrs["space"] == space.to_dict()
    create_study(s, space, 0)  # and it resumes from then on
    with pytest.raises(ConfigError, match="--epochs: study 'half' was created with 2, not 3"):
        create_study(settings(db_url, "half", 3), space, 0)


def test_study_without_settings_is_claimed_by_the_next_command(db_url):
    """A kill right after Optuna created the study, before any setting was written."""
    quiet_optuna()
    space = load_space(None, "mlp-synth")
    optuna.create_study(study_name="bare", storage=open_storage(db_url, create=True), direction="maximize")
    study = create_study(settings(db_url, "bare", 2), space, 0)
    assert study.user_attrs["search_config"]["epochs"] == 2 and study.user_attrs["space"] == space.to_dict()


def test_refused_command_changes_nothing(db_url):
    quiet_optuna()
    space = load_space(None, "mlp-synth")
    storage = open_storage(db_url, create=True)
    half = optuna.create_study(study_name="half", storage=storage, direction="maximize")
    half.set_user_attr("search_config", settings(db_url, "half", 2).to_dict())
    with pytest.raises(ConfigError, match="--epochs"):
        create_study(settings(db_url, "half", 3), space, 0)
    assert set(half.user_attrs) == {"search_config"}  # the refused command wrote no space


@pytest.mark.slow
def test_two_search_commands_started_together_one_is_refused_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    procs = [
        subprocess.Popen(
            [ALEXSEARCH, *mlp_args("search", url, "race", tmp_path / "art", trials=2, epochs=epochs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for epochs in (2, 3)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    err = next(err for rc, err in results if rc == 2)
    assert len(err.strip().splitlines()) == 1 and "--epochs: study 'race' was created with" in err, err
    storage = open_storage(url, create=False)
    try:
        trials = optuna.load_study(study_name="race", storage=storage).get_trials()
    finally:
        storage.engine.dispose()
    epochs = Counter(t.user_attrs["config"]["train"]["epochs"] for t in trials if "config" in t.user_attrs)
    assert len(epochs) == 1, epochs  # the study does not mix 2- and 3-epoch trials
