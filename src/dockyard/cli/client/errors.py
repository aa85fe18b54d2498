"""Errors the CLI shows as one line on stderr, with a non-zero exit."""

from __future__ import annotations


class CliError(Exception):
    """Something the user can fix: not logged in, a bad option, an unreachable server."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiFailure(CliError):
    """The server answered with an error (`{"errors": [{"code", "message"}]}`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status = status
        self.code = code
        self.detail = message
