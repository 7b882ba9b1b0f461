"""Password and one-time-code hashing with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# A valid hash of a random secret: verifying against it costs the same as a real check, so an
# unknown username takes as long to refuse as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-7c1e4b")


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, secret) and bool(stored_hash)
    except (VerificationError, InvalidHashError):
        return False


def burn_time(secret: str) -> None:
    """Spend one verification's worth of time (for paths that must not be faster than others)."""
    verify_secret("", secret)
