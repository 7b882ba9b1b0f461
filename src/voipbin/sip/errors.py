"""The one exception the SIP layer raises for bad input from the network."""

from __future__ import annotations


class ParseError(Exception):
    """Malformed SIP input.

    ``status_code`` is the response a server should answer a request with
    (400 Bad Request unless a more specific code fits, e.g. 505 for an
    unknown SIP version or 416 for an unsupported URI scheme).
    """

    def __init__(self, reason: str, status_code: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"ParseError({self.reason!r}, status_code={self.status_code})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParseError):
            return NotImplemented
        return (self.reason, self.status_code) == (other.reason, other.status_code)

    def __hash__(self) -> int:
        return hash((self.reason, self.status_code))
