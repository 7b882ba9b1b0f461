"""What a phone dialled, read as a phone number (or not)."""

from __future__ import annotations

import pytest

from voipbin.calls.inbound import dialed_number


@pytest.mark.parametrize(
    ("dialed", "number"),
    [
        ("+15557654321", "+15557654321"),
        ("0015557654321", "+15557654321"),
        ("15557654321", "+15557654321"),
        ("+1 (555) 765-4321", "+15557654321"),
        ("1001", None),  # an extension
        ("sipp1", None),
        ("+0123456789", None),
        ("", None),
    ],
)
def test_dialed_number(dialed: str, number: str | None) -> None:
    assert dialed_number(dialed) == number
