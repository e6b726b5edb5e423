"""The exit codes of the ``authpulse`` command and :class:`CliError`, an expected failure."""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_STORE", "EXIT_USAGE", "CliError"]

EXIT_OK = 0  #: done
EXIT_FAILED = 1  #: the operation failed, or was declined at the prompt
EXIT_USAGE = 2  #: bad arguments (argparse), bad AUTHPULSE_* settings, or no cli extra
EXIT_NOT_FOUND = 3  #: no session with that id
EXIT_STORE = 4  #: the store is unreachable, or its URL cannot be used


class CliError(Exception):
    """An expected failure: one line on stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
