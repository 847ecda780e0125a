"""Create a study, or resume it after checking that the settings and the space are the ones it was made with."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from model.errors import ConfigError
from search.settings import SearchConfig
from search.space.pruning import make_pruner
from search.space.samplers import make_sampler
from search.space.space import Space
from search.study.note import save_study_note, study_note
from search.trials import record
from storage.optuna_private import insert_study_user_attrs, study_id
from storage.rdb import say_on_stderr
from storage.study import Heartbeat, open_storage
from storage.url import redact

SETTINGS_KEYS = (record.SEARCH_CONFIG, record.SPACE)  # written together, once, by the process that creates the study


def create_study(
    settings: SearchConfig,
    space: Space,
    sampler_seed: int,
    heartbeat: Heartbeat | None = None,
    device_label: str = "unknown",
    say: Callable[[str], None] = say_on_stderr,
    wait_for_server: Callable[[], bool] | None = None,
) -> optuna.Study:
    """Create the study, or load it to resume; the sampler seed also moves on with the trials already run,
    so a resumed study does not propose its first configs again.

    The settings are claimed in one transaction (storage/optuna_private.py): of several commands started
    together, exactly one writes them and the others are checked against them, so a second command with
    other settings is refused. A study left without settings (a kill right after Optuna created it) is
    claimed by the next command; one left with only some of them (older versions wrote them one by one)
    gets the missing ones. say, wait_for_server: the storage's outage lines, and whether a server that cannot
    be reached at the opening is waited for too, until wait_for_server() says stop; only for a study known to
    exist (storage.study.open_storage).
    """
    storage = open_storage(
        settings.storage,
        create=True,
        heartbeat=heartbeat,
        outage_timeout_s=settings.db_outage_timeout,
        say=say,
        wait_for_server=wait_for_server,
    )
    study = optuna.create_study(
        study_name=settings.study,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=make_sampler(settings.sampler, space, sampler_seed, settings.tpe_startup()),
        pruner=make_pruner(settings.pruner, settings.epochs, settings.startup_trials, settings.warmup_epochs),
    )
    ours = {
        record.SEARCH_CONFIG: settings.replace(storage=redact(settings.storage)).to_dict(),
        record.SPACE: space.to_dict(),
    }
    stored = study.user_attrs
    _check_same_settings(settings, space, stored)  # before writing anything: a refused command changes nothing
    missing = {key: ours[key] for key in SETTINGS_KEYS if key not in stored}
    claimed = bool(missing) and insert_study_user_attrs(storage, study_id(study), missing)
    if missing and not claimed:  # another command claimed them first: its settings must be ours
        _check_same_settings(settings, space, study.user_attrs)
    if study.metric_names is None:  # the dashboard's label for the value (else "Objective 0")
        study.set_metric_names(["val_acc"])
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = make_sampler(settings.sampler, space, sampler_seed + 7919 * existing, settings.tpe_startup())
    if claimed and len(missing) == len(SETTINGS_KEYS):
        save_study_note(study, study_note(settings, space, device_label))
    return study


def _check_same_settings(settings: SearchConfig, space: Space, stored: dict) -> None:
    conflict = settings.conflict_with(stored[record.SEARCH_CONFIG]) if record.SEARCH_CONFIG in stored else None
    if conflict is None and record.SPACE in stored and stored[record.SPACE] != space.to_dict():
        conflict = (
            f"--space: study {settings.study!r} was created with another search space; resume it "
            "with the same space, or start a new study with --study"
        )
    if conflict is not None:
        raise ConfigError(conflict)
