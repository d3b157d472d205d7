"""User errors: one line, exit code 2, no traceback (bugs keep theirs)."""
from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input from the user: printed as one line naming the place and the fix."""


class ConfigError(UserError):
    """``matrix.yaml`` (or a model definition) is invalid."""

    def __init__(self, path: str, where: str, message: str) -> None:
        self.path, self.where, self.message = path, where, message
        place = f"{path}: {where}" if where else path
        super().__init__(f"{place}: {message}")
