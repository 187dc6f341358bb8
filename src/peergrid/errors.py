"""Errors that peergrid raises on purpose.

`InputError` is for bad user input (scenario files, meter data, order books, CLI arguments). Its
message names the file, the field or row, and the reason; the CLI turns it into exit code 2.
"""

from __future__ import annotations


class PeergridError(Exception):
    """Base class of every error peergrid raises on purpose."""


class InputError(PeergridError):
    """User input is invalid. The message names the file, field or row, and the reason."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)
