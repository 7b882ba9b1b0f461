"""What the calls service refuses, in words a person can act on; the API maps each to its HTTP answer."""

from __future__ import annotations


class CallError(Exception):
    """A refused request about calls: ``reason`` is the API's error reason, ``status`` its HTTP status."""

    def __init__(self, message: str, reason: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status


class CallRequestError(CallError):
    """A call the platform cannot place; the message says how to fix it."""

    def __init__(self, message: str, reason: str = "INVALID_REQUEST_PARAMETER") -> None:
        super().__init__(message, reason)


class CallStateError(CallError):
    """The call (or speaking) is not in the state the request needs."""

    def __init__(self, message: str, reason: str = "CALL_STATE_INVALID") -> None:
        super().__init__(message, reason)


class RecordingError(CallError):
    """A recording that cannot start or stop."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, reason, 409 if reason == "RECORDING_ALREADY_ACTIVE" else 400)
