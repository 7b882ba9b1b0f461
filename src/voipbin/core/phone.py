"""Phone numbers as the API takes them: E.164."""

from __future__ import annotations

E164_RULE = "a '+' then the country code and number, 2 to 15 digits in all, no spaces or dashes (e.g. +15551234567)"


def is_e164(value: str) -> bool:
    digits = value[1:]
    return value.startswith("+") and digits.isascii() and digits.isdigit() and 2 <= len(digits) <= 15 and digits[0] != "0"
