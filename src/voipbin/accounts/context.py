"""What account flows (signup, recovery, email change, the sandbox's accounts) work with,
handed to them by the running platform rather than reached through it."""

from __future__ import annotations

from dataclasses import dataclass

from voipbin.auth.throttle import Throttle
from voipbin.config import Settings
from voipbin.core.clock import Clock
from voipbin.mail.outbox import Mailer
from voipbin.store.db import Store


@dataclass(frozen=True)
class AccountsContext:
    settings: Settings
    store: Store
    clock: Clock
    mailer: Mailer
    throttle: Throttle
