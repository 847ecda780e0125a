"""Where a study keeps files: Optuna artifacts (weights, figures) and per-trial checkpoints.

For SQLite the folder sits next to the database: `runs/study.db` -> `runs/study-artifacts/`.
For a server database, pass --artifacts DIR (default ./alexsearch-artifacts); every machine that
writes or reads artifacts must see the same folder (a shared filesystem), as with any Optuna
FileSystemArtifactStore.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from storage.optuna_private import delete_artifact_attr
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


SLUG_CHARS = 40  # of the readable part of a folder name; the whole name stays far below 255 bytes
HASH_CHARS = 12  # hex digits of SHA-256: 48 bits, so two names share a folder with odds ~ n^2 / 2^49


def safe_name(name: str) -> str:
    """A study name as a folder name: a readable ASCII slug plus a hash of the whole name.

    The hash keeps names apart that the slug merges ("café" and "cafe", "a/b" and "a_b", or names equal in
    their first 40 characters): two studies never share a checkpoint folder.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_name).strip("._")[:SLUG_CHARS] or "study"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:HASH_CHARS]}"


def checkpoint_dir(folder: Path, study_name: str) -> Path:
    return folder / "checkpoints" / safe_name(study_name)


def drop_study_artifact(study: optuna.Study, store: FileSystemArtifactStore, artifact_id: str) -> None:
    """Take a study artifact off the study's list, then delete its file, so a listed artifact always exists."""
    delete_artifact_attr(study, artifact_id)
    try:
        store.remove(artifact_id)
    except ArtifactNotFound:
        pass
