"""The one error type of account flows; the API turns it into its error envelope."""

from __future__ import annotations


class AccountError(Exception):
    def __init__(self, status_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason
        self.message = message
