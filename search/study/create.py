"""Create a study, or resume it after checking that the settings and the space are the ones it was made with."""

from __future__ import annotations

import optuna

from model.errors import ConfigError
from search.settings import SearchConfig
from search.space.pruning import make_pruner
from search.space.samplers import make_sampler
from search.space.space import Space
from search.study.note import save_study_note, study_note
from storage.study import Heartbeat, open_storage
from storage.url import redact


def create_study(settings: SearchConfig, space: Space, sampler_seed: int, heartbeat: Heartbeat | None = None,
                 device_label: str = "unknown") -> optuna.Study:
    """Create the study, or load it to resume; the sampler seed also moves on with the trials already run,
    so a resumed study does not propose its first configs again."""
    storage = open_storage(settings.storage, create=True, heartbeat=heartbeat)
    study = optuna.create_study(
        study_name=settings.study, storage=storage, direction="maximize", load_if_exists=True,
        sampler=make_sampler(settings.sampler, space, sampler_seed),
        pruner=make_pruner(settings.pruner, settings.epochs, settings.startup_trials, settings.warmup_epochs),
    )
    stored = study.user_attrs.get("search_config")
    if stored is not None:
        conflict = settings.conflict_with(stored)
        if conflict is None and study.user_attrs.get("space") != space.to_dict():
            conflict = (f"--space: study {settings.study!r} was created with another search space; resume it "
                        "with the same space, or start a new study with --study")
        if conflict is not None:
            raise ConfigError(conflict)
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = make_sampler(settings.sampler, space, sampler_seed + 7919 * existing)
    if stored is None:
        study.set_user_attr("search_config", settings.replace(storage=redact(settings.storage)).to_dict())
        study.set_user_attr("space", space.to_dict())
        save_study_note(study, study_note(settings, space, device_label))
    return study
