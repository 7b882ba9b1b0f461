"""The sandbox's published operator login, and whether it still opens the install."""

from __future__ import annotations

from sqlalchemy import select

from voipbin.auth.passwords import verify_secret
from voipbin.store.db import Store
from voipbin.store.models import Agent

ADMIN_USERNAME = "admin@localhost"
ADMIN_PASSWORD = "admin@localhost"

# The last admin password hash checked, and whether it was the default's: argon2 is slow to ask
# again, and the hash changes exactly when the password does.
_last_verdict: tuple[str, bool] = ("", False)


async def default_password_in_use(store: Store) -> bool:
    """Whether admin@localhost can still log in with its published password."""
    global _last_verdict
    async with store.session() as session:
        password_hash = await session.scalar(
            select(Agent.password_hash).where(Agent.username == ADMIN_USERNAME, Agent.tm_delete.is_(None))
        )
    if not password_hash:
        return False
    if _last_verdict[0] != password_hash:
        _last_verdict = (password_hash, await verify_secret(password_hash, ADMIN_PASSWORD))
    return _last_verdict[1]
