"""What the CLI reports as a user's mistake (one line, exit 2), and the Optuna warnings users should not see.

Below the CLI and the workers: spawned workers report errors the same way the CLI does.
"""

from __future__ import annotations

import warnings

import optuna

from model.errors import ConfigError, DataError
from search.space.space import SpaceError
from storage.errors import StorageError

# OSError: a path the user gave cannot be read or written (a folder where a file should be, no permission).
USAGE_ERRORS = (ConfigError, DataError, SpaceError, StorageError, ValueError, OSError)


def one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or type(e).__name__}"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def silence_optuna_warnings() -> None:
    """Optuna's experimental-feature notices are for developers, not for users of alexsearch."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", module="optuna")
