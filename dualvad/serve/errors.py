"""Errors the serve app answers with: every one is JSON ``{"request_id", "error": {"code", "message"}}``.

:class:`ServeError` is raised in the Api and inside replicas (it pickles, so a replica's error reaches the
Api whole, status included); anything else that escapes a replica is a 500 logged with its request id.
"""

from __future__ import annotations


class ServeError(Exception):
    """An HTTP error with a machine-readable ``code`` and a message that says what was wrong."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, message, headers)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def error_body(request_id: str, code: str, message: str) -> dict:
    """The JSON body of an error response."""
    return {"request_id": request_id, "error": {"code": code, "message": message}}
