"""Storage URL checks."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import URL, make_url

from storage.defaults import DEFAULT_STORAGE  # noqa: F401 - re-exported
from storage.errors import StorageError

EXAMPLES = "e.g. sqlite:///alexsearch.db or postgresql+psycopg://user:pass@host:5432/db"


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise StorageError(f"--storage: cannot parse {url!r} as a SQLAlchemy URL ({EXAMPLES})") from None
    try:
        parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(f"--storage: unknown database kind {parsed.drivername!r} in {url!r} ({EXAMPLES})") from None
    except ImportError as e:
        raise StorageError(f"--storage: the driver for {parsed.drivername!r} is not installed ({e}); "
                           "for PostgreSQL install alexsearch[postgres]") from None
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for other engines. In-memory SQLite is refused."""
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise StorageError("--storage: in-memory SQLite cannot be shared between processes; "
                           "give a file, e.g. sqlite:///alexsearch.db")
    return Path(url.database).expanduser()


def redact(url: str) -> str:
    """The URL with any password hidden, for logs, notes and exports."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
