from __future__ import annotations

import pytest

from voipbin.api.deps import Principal
from voipbin.api.ws import authorize_topic
from voipbin.auth.permissions import Permission
from voipbin.events.topics import matches, parse_scope

TOPIC = "customer_id:c1:call:abc"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("customer_id:c1:call:abc", True),
        ("customer_id:c1:call:*", True),
        ("customer_id:c1:call", True),
        ("customer_id:c1", True),
        ("customer_id:c1:*:*", True),
        ("customer_id:c1:call:abd", False),
        ("customer_id:c1:calls:*", False),
        ("customer_id:c2:call:*", False),
        ("customer_id:c1:call:abc:extra", False),
        ("customer_id:c1:cal", False),
    ],
)
def test_matches(pattern: str, expected: bool) -> None:
    assert matches(pattern, TOPIC) is expected


def test_scope_parsing() -> None:
    assert parse_scope("customer_id:c1:call:*") is not None
    assert parse_scope("agent_id:a1") is not None
    for bad in ("", "customer_id", "customer_id:*:call", "queue:q1:x", "customer_id::call", "customer_id:c1::x"):
        assert parse_scope(bad) is None


ADMIN = Principal(customer_id="c1", permission=Permission.CUSTOMER_ADMIN, agent_id="a1")
AGENT = Principal(customer_id="c1", permission=Permission.CUSTOMER_AGENT, agent_id="a2")
OPERATOR = Principal(customer_id="c0", permission=Permission.PROJECT_SUPER_ADMIN | Permission.CUSTOMER_ADMIN)


def test_a_customer_subscribes_only_to_its_own_topics() -> None:
    assert authorize_topic(ADMIN, "customer_id:c1:call:*") is None
    assert authorize_topic(ADMIN, "customer_id:c2:call:*") is not None
    assert authorize_topic(ADMIN, "agent_id:a1:call") is None
    assert authorize_topic(ADMIN, "agent_id:a9:call") is not None
    assert authorize_topic(ADMIN, "garbage") is not None


def test_plain_agents_use_their_agent_scope() -> None:
    assert authorize_topic(AGENT, "customer_id:c1:call:*") is not None
    assert authorize_topic(AGENT, "agent_id:a2:call:*") is None


def test_the_operator_may_watch_any_customer() -> None:
    assert authorize_topic(OPERATOR, "customer_id:c1:call:*") is None
