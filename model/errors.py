"""The model package's errors: the user's input is wrong (ConfigError, DataError: the CLI shows them in one line),
training diverged (DivergedError), or training was asked to stop (Interrupted)."""

from model.config import ConfigError


class DataError(ValueError):
    """Data is missing, corrupt or not in the expected layout. The message says where and how to fix it."""


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"loss became {loss} in epoch {epoch}")
        self.epoch = epoch
        self.loss = loss


class Interrupted(KeyboardInterrupt):
    """Training was asked to stop (the caller's should_stop said so) before a training step."""


__all__ = ["ConfigError", "DataError", "DivergedError", "Interrupted"]
