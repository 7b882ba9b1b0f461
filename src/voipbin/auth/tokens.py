"""JWTs for logins and opaque access-key tokens."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

ALGORITHM = "HS256"
ACCESSKEY_PREFIX = "vb_"
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Claims:
    agent_id: str
    customer_id: str
    username: str
    permission: int
    expires: datetime
    # The agent's session epoch when the token was issued; a password change raises the agent's.
    epoch: int = 0


class JwtSigner:
    def __init__(self, secret: bytes, lifetime: timedelta) -> None:
        self._secret = secret
        self.lifetime = lifetime

    def rekey(self, secret: bytes) -> None:
        """Sign and verify with ``secret`` from now on (the install's shared one, once loaded)."""
        self._secret = secret

    def issue(
        self, agent_id: str, customer_id: str, username: str, permission: int, now: datetime, epoch: int = 0
    ) -> str:
        expires = now + self.lifetime
        payload = {
            "type": "agent",
            "sub": agent_id,
            "agent": {
                "id": agent_id,
                "customer_id": customer_id,
                "username": username,
                "permission": permission,
            },
            "epoch": epoch,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "expire": expires.isoformat(),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Claims | None:
        """The claims of a valid, unexpired token of ours, else None."""
        try:
            payload = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp"]})
            agent = payload["agent"]
            return Claims(
                agent_id=str(agent["id"]),
                customer_id=str(agent["customer_id"]),
                username=str(agent["username"]),
                permission=int(agent["permission"]),
                expires=datetime.fromtimestamp(payload["exp"]).astimezone(),
                epoch=int(payload.get("epoch", 0)),
            )
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            return None


def new_accesskey_token() -> str:
    return ACCESSKEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(32))


def hash_accesskey_token(token: str) -> str:
    # Tokens carry 190 bits of randomness, so a fast hash is enough and allows lookup by hash.
    return hashlib.sha256(token.encode()).hexdigest()
