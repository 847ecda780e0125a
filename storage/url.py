"""Storage URL checks."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from storage.defaults import DEFAULT_STORAGE  # noqa: F401 - re-exported
from storage.errors import StorageError

FROM_ENV = "env:"  # --storage env:NAME: the URL is the value of environment variable NAME


def url_from_env(text: str) -> str:
    """text as it is, or for env:NAME the value of environment variable NAME. A URL with a password given that
    way shows in no process list: any user can read a command line (ps), only its own user and root a process's
    environment. ValueError when NAME is not set."""
    if not text.startswith(FROM_ENV):
        return text
    name = text.removeprefix(FROM_ENV)
    value = os.environ.get(name, "") if name else ""
    if not value:
        raise ValueError(f"{text!r}: environment variable {name!r} is not set (or is empty)")
    return value


if TYPE_CHECKING:
    from sqlalchemy.engine import URL

EXAMPLES = "e.g. sqlite:///alexsearch.db or postgresql+psycopg://user:pass@host:5432/db"
HIDDEN = "***"
# Query parameters that carry a secret in the URLs of SQLAlchemy's drivers (libpq: password, sslpassword;
# MySQL drivers: passwd, password1..3; pyodbc: pwd), matched case-insensitively.
SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "sslpassword", "password1", "password2", "password3")
_SECRET_QUERY = re.compile(rf"((?:^|[?&;])(?:{'|'.join(SECRET_QUERY_KEYS)})=)[^&;#\s]*", re.IGNORECASE)
# Shorter secrets are hidden only where they stand in a URL: replacing every "p" would garble the message.
MIN_LITERAL_SECRET = 4
# user:secret@ after a scheme, also in text that is not a well-formed URL ("postgresql:/u:secret@host").
_USERINFO = re.compile(r"(:/*[^:/?#@\s]*:)([^/?#\s]*)@")


def parse_url(url: str) -> URL:
    """url parsed, its dialect and driver importable; every error quotes the URL with its secrets hidden."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:  # ValueError: a port that is not a number
        why = "its port is not a number" if "int()" in str(e) else "it is not a SQLAlchemy URL"
        raise StorageError(f"--storage: cannot parse {redact(url)!r}: {why} ({EXAMPLES})") from None
    try:
        parsed.get_dialect().import_dbapi()  # the driver module itself, so a missing one fails here, not in a worker
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(
            f"--storage: unknown database kind {parsed.drivername!r} in {redact(url)!r} ({EXAMPLES})"
        ) from None
    except ImportError as e:
        raise StorageError(
            f"--storage: the driver for {parsed.drivername!r} is not installed ({e}); "
            "install it (for PostgreSQL: pip install 'alexsearch[postgres]')"
        ) from None
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for other engines. In-memory SQLite is refused."""
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise StorageError(
            "--storage: in-memory SQLite cannot be shared between processes; give a file, e.g. sqlite:///alexsearch.db"
        )
    return Path(url.database).expanduser()


def secrets_of(url: str) -> list[str]:
    """The secrets a URL holds (its password and secret query values), as written and percent-decoded."""
    from sqlalchemy.engine import make_url

    found = [m.group(0).split("=", 1)[1] for m in _SECRET_QUERY.finditer(url)]
    found += [m.group(2) for m in _USERINFO.finditer(url)]
    try:
        parsed = make_url(url)
        found.append(parsed.password or "")
        found += [str(v) for k, v in parsed.query.items() if k.lower() in SECRET_QUERY_KEYS]
    except Exception:  # an unparsable URL: the patterns above are all there is
        pass
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact(url: str) -> str:
    """The URL with its password and secret query parameters hidden: for messages, logs, notes, exports.

    Works on text that does not parse as a URL too, so an error about a bad URL cannot leak it.
    """
    return redact_text(url, url)


def redact_text(text: str, url: str | None) -> str:
    """text with every secret of url (and any user:pass@ or password= in text itself) replaced by ***.

    The one redaction: every message or record that may quote a storage URL goes through it.
    """
    for secret in secrets_of(url) if url else []:  # first: a password holding '@' defeats the patterns
        if len(secret) >= MIN_LITERAL_SECRET:
            text = text.replace(secret, HIDDEN)
    text = _USERINFO.sub(rf"\1{HIDDEN}@", text)
    return _SECRET_QUERY.sub(rf"\1{HIDDEN}", text)
