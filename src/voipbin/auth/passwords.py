"""Password and one-time-code hashing with argon2id, off the event loop.

argon2 is deliberately slow (tens of milliseconds); run inline it would stall every request and
call in the process, so each hash runs in a worker thread (the C code releases the GIL).
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# A valid hash of a random secret: verifying against it costs the same as a real check, so an
# unknown username takes as long to refuse as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-7c1e4b")


async def hash_secret(secret: str) -> str:
    return await asyncio.to_thread(_hasher.hash, secret)


async def verify_secret(stored_hash: str, secret: str) -> bool:
    """True when ``secret`` matches; an empty ``stored_hash`` never matches but costs the same."""
    return await asyncio.to_thread(_verify, stored_hash, secret)


def _verify(stored_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, secret) and bool(stored_hash)
    except (VerificationError, InvalidHashError):
        return False
