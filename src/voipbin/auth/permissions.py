"""VoIPBIN's agent permission bit flags."""

from __future__ import annotations

from enum import IntFlag


class Permission(IntFlag):
    NONE = 0
    PROJECT_SUPER_ADMIN = 1
    PROJECT_ALL = 15
    CUSTOMER_AGENT = 16
    CUSTOMER_ADMIN = 32
    CUSTOMER_MANAGER = 64
    CUSTOMER_ALL = 240
    ALL = 65535


ADMIN = Permission.CUSTOMER_ADMIN
ADMIN_OR_MANAGER = Permission.CUSTOMER_ADMIN | Permission.CUSTOMER_MANAGER
