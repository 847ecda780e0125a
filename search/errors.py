"""What the CLI reports as the user's mistake (one line, exit 2), and the Optuna warnings users should not see.

Everything else that escapes a command is a bug: the CLI prints its traceback and exits 1. Below the CLI and
the workers: launched workers report errors the same way the CLI does.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from model.errors import ConfigError, DataError
from storage.errors import StorageError

# Light at import: `--help` reads search.settings, which raises UsageError; Optuna and SQLAlchemy (for
# redact_text) load only when an error is shown or the warnings are silenced.


class UsageError(ValueError):
    """The user's input is wrong: a bad option, file or study. The message names the field and what is allowed."""


# model/ and storage/ sit below search/ and cannot subclass UsageError; their user errors count as usage errors too.
USAGE_ERRORS = (UsageError, ConfigError, DataError, StorageError)


def one_line(e: BaseException, storage_url: str | None = None) -> str:
    """The error's first line, with every secret of storage_url (and any URL password) hidden."""
    from storage.url import redact_text

    if isinstance(e, OSError) and e.filename is not None:
        text = f"{e.filename}: {e.strerror or type(e).__name__}"
    else:
        text = str(e).strip()
        text = text.splitlines()[0] if text else type(e).__name__
    return redact_text(text, storage_url)


def silence_optuna_warnings() -> None:
    """Optuna's experimental-feature notices are for developers, not for users of alexsearch."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", module="optuna")


@contextmanager
def user_paths() -> Iterator[None]:
    """Around code that reads or writes the paths a user gave (--out, --data, --artifacts, a SQLite --storage):
    an OSError naming a file there (a file where a folder should be, no permission, a full disk) is a usage
    error, shown as the path and the reason."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise
        raise UsageError(one_line(e)) from e
