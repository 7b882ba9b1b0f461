"""The links that take a call into a conference on another node: an INVITE that claims one must
carry a token the install signed, unused, for a conference of the customer it names."""

from __future__ import annotations

import jwt

from tests.security.conftest import Server, sip_exchange
from voipbin.calls.links import LINK_HEADER, ConferenceLink, LinkSigner


def linked_invite(call_id: str, token: str) -> str:
    return (
        f"INVITE sip:conference@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {{source}}:{{port}};branch=z9hG4bK{call_id};rport\r\n"
        f"From: <sip:node@192.0.2.7>;tag=l{call_id}\r\nTo: <sip:conference@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 INVITE\r\nContact: <sip:node@{{source}}:{{port}}>\r\nMax-Forwards: 70\r\n{LINK_HEADER}: {token}\r\n"
        "Content-Length: 0\r\n\r\n"
    )


async def test_a_forged_a_foreign_or_a_replayed_link_is_refused(server: Server) -> None:
    operator = await server.operator()
    alice = await server.tenant("alice-links@example.com", operator)
    bob = await server.tenant("bob-links@example.com", operator)
    created = await server.client.post("/v1.0/conferences", params=alice.auth, json={"type": "conference", "name": "board"})
    assert created.status_code == 200, created.text
    conference_id = created.json()["id"]
    port = server.platform.sip.stack.port

    # Signed by someone without the install's secret: refused before anything is looked up.
    forged = LinkSigner(b"x" * 32).sign(ConferenceLink(alice.customer_id, conference_id, "call", "flow"))
    assert (await sip_exchange(port, linked_invite("forged", forged), final=True)).startswith(b"SIP/2.0 403")
    # A link the install signed for bob's call does not take bob into alice's conference.
    foreign = server.platform.links.sign(ConferenceLink(bob.customer_id, conference_id, "call", "flow"))
    assert (await sip_exchange(port, linked_invite("foreign", foreign), final=True)).startswith(b"SIP/2.0 480")
    # Seen on the wire and sent again: a link is good once.
    assert (await sip_exchange(port, linked_invite("replayed", foreign), final=True)).startswith(b"SIP/2.0 403")
    # Its claims changed to alice's, its signature kept: no longer a match.
    claims = jwt.decode(foreign, options={"verify_signature": False})
    parts = foreign.split(".")
    parts[1] = jwt.encode({**claims, "customer_id": alice.customer_id, "jti": "new"}, b"k" * 32, algorithm="HS256").split(".")[1]
    assert (await sip_exchange(port, linked_invite("tampered", ".".join(parts)), final=True)).startswith(b"SIP/2.0 403")
