"""Topic names and subscription patterns (pure functions).

A topic is ``<scope>:<scope_id>:<resource>:<resource_id>``. A pattern matches a topic when each
of its segments equals the topic's or is ``*``; a pattern with fewer segments matches by prefix
(VoIPBIN's code matches prefixes, its docs show ``*``: both are accepted).
"""

from __future__ import annotations

from dataclasses import dataclass

SCOPES = ("customer_id", "agent_id")


def customer_topic(customer_id: str, resource: str, resource_id: str) -> str:
    return f"customer_id:{customer_id}:{resource}:{resource_id}"


def matches(pattern: str, topic: str) -> bool:
    want = pattern.split(":")
    have = topic.split(":")
    if len(want) > len(have):
        return False
    return all(w == "*" or w == h for w, h in zip(want, have))


@dataclass(frozen=True)
class Scope:
    kind: str
    owner_id: str


def parse_scope(pattern: str) -> Scope | None:
    """The ``<scope>:<scope_id>`` a pattern starts with, or None when it names none."""
    parts = pattern.split(":")
    if len(parts) < 2 or parts[0] not in SCOPES or not parts[1] or parts[1] == "*":
        return None
    if any(not part for part in parts):
        return None
    return Scope(parts[0], parts[1])
