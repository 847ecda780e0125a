"""Where a study keeps files: Optuna artifacts (weights, figures) and per-trial checkpoints.

For SQLite the folder sits next to the database: `runs/study.db` -> `runs/study-artifacts/`.
For a server database, pass --artifacts DIR (default ./alexsearch-artifacts); every machine that
writes or reads artifacts must see the same folder (a shared filesystem), as with any Optuna
FileSystemArtifactStore.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts._protocol import ArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from storage.heartbeat import rdb_backend
from storage.url import parse_url, sqlite_path

DEFAULT_SERVER_ARTIFACTS = "alexsearch-artifacts"


def artifact_dir(storage_url: str, override: str | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    path = sqlite_path(parse_url(storage_url))
    if path is None:
        return Path(DEFAULT_SERVER_ARTIFACTS)
    return path.with_name(path.stem + "-artifacts")


def artifact_store(folder: Path) -> FileSystemArtifactStore:
    """Optuna's file artifact store in folder/optuna (what optuna-dashboard serves)."""
    base = folder / "optuna"
    base.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base)


def safe_name(name: str) -> str:
    """A study name as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "_"


def checkpoint_dir(folder: Path, study_name: str) -> Path:
    return folder / "checkpoints" / safe_name(study_name)


def drop_study_artifact(study: optuna.Study, store: ArtifactStore, artifact_id: str) -> None:
    """Take a study artifact off the study's list, then delete its file, so a listed artifact always exists.

    Optuna has no call that deletes a study system attr, and optuna-dashboard's own delete leaves a JSON
    null behind that optuna.artifacts.get_all_artifact_meta cannot read; so the row goes, through the
    RDBStorage's session (its table as of Optuna 5.0).
    """
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX
    from optuna.storages._rdb import models

    backend = rdb_backend(study)
    if backend is None:
        raise TypeError(f"dropping an artifact needs an RDBStorage, got {type(study._storage).__name__}")
    with backend.scoped_session() as session:
        session.query(models.StudySystemAttributeModel).filter_by(
            study_id=study._study_id, key=ARTIFACTS_ATTR_PREFIX + artifact_id).delete()
        session.commit()
    try:
        store.remove(artifact_id)
    except ArtifactNotFound:
        pass
