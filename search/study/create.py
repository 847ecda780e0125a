"""Create a study, or resume it after checking that the settings and the space are the ones it was made with."""

from __future__ import annotations

import optuna

from model.errors import ConfigError
from search.settings import SearchConfig
from search.space.pruning import make_pruner
from search.space.samplers import make_sampler
from search.space.space import Space
from search.study.note import save_study_note, study_note
from search.trials import record
from storage.study import Heartbeat, open_storage
from storage.url import redact


def create_study(settings: SearchConfig, space: Space, sampler_seed: int, heartbeat: Heartbeat | None = None,
                 device_label: str = "unknown") -> optuna.Study:
    """Create the study, or load it to resume; the sampler seed also moves on with the trials already run,
    so a resumed study does not propose its first configs again."""
    storage = open_storage(settings.storage, create=True, heartbeat=heartbeat)
    study = optuna.create_study(
        study_name=settings.study, storage=storage, direction="maximize", load_if_exists=True,
        sampler=make_sampler(settings.sampler, space, sampler_seed, settings.tpe_startup()),
        pruner=make_pruner(settings.pruner, settings.epochs, settings.startup_trials, settings.warmup_epochs),
    )
    stored = study.user_attrs.get(record.SEARCH_CONFIG)
    if stored is not None:
        conflict = settings.conflict_with(stored)
        if conflict is None and study.user_attrs.get(record.SPACE) != space.to_dict():
            conflict = (f"--space: study {settings.study!r} was created with another search space; resume it "
                        "with the same space, or start a new study with --study")
        if conflict is not None:
            raise ConfigError(conflict)
    if study.metric_names is None:  # the dashboard's label for the value (else "Objective 0")
        study.set_metric_names(["val_acc"])
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = make_sampler(settings.sampler, space, sampler_seed + 7919 * existing, settings.tpe_startup())
    if stored is None:
        study.set_user_attr(record.SEARCH_CONFIG, settings.replace(storage=redact(settings.storage)).to_dict())
        study.set_user_attr(record.SPACE, space.to_dict())
        save_study_note(study, study_note(settings, space, device_label))
    return study
