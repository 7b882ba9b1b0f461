"""Dialogs (RFC 3261 section 12), sans-IO: the state two user agents share and in-dialog requests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from voipbin.sip.location import Peer
from voipbin.sip.message import Address, Headers, Request, Response


def new_tag() -> str:
    return secrets.token_hex(5)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    # Where in-dialog requests go: the peer's Contact, reached through ``peer`` (the address its
    # messages really came from, which behind NAT differs from the Contact).
    remote_target: str
    peer: Peer
    local_cseq: int
    remote_cseq: int = 0
    route_set: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_caller(cls, invite: Request, response: Response, peer: Peer) -> Dialog:
        """The UAC's view, from its INVITE and the 2xx that established the dialog."""
        contact = response.contacts[0].uri if response.contacts else invite.uri
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_addr.tag or "",
            remote_tag=response.to_addr.tag or "",
            local_uri=invite.from_addr.uri,
            remote_uri=invite.to_addr.uri,
            remote_target=contact,
            peer=peer,
            local_cseq=invite.cseq.number,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
        )

    @classmethod
    def as_callee(cls, invite: Request, local_tag: str, peer: Peer) -> Dialog:
        """The UAS's view of an incoming INVITE it answers."""
        contact = invite.contacts[0].uri if invite.contacts else invite.from_addr.uri
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_addr.tag or "",
            local_uri=invite.to_addr.uri,
            remote_uri=invite.from_addr.uri,
            remote_target=contact,
            peer=peer,
            local_cseq=secrets.randbelow(2**16) + 1,
            remote_cseq=invite.cseq.number,
            route_set=list(invite.headers.get_all("Record-Route")),
        )

    def matches(self, request: Request) -> bool:
        return (
            request.call_id == self.call_id
            and (request.to_addr.tag or "") == self.local_tag
            and (request.from_addr.tag or "") == self.remote_tag
        )

    def request(self, method: str, via: str, contact: str, body: bytes = b"", content_type: str = "") -> Request:
        """A new in-dialog request (not ACK, whose CSeq is the INVITE's: see :meth:`ack`)."""
        self.local_cseq += 1
        return self._build(method, self.local_cseq, via, contact, body, content_type)

    def ack(self, invite_cseq: int, via: str, contact: str, body: bytes = b"") -> Request:
        return self._build("ACK", invite_cseq, via, contact, body, "application/sdp" if body else "")

    def _build(self, method: str, cseq: int, via: str, contact: str, body: bytes, content_type: str) -> Request:
        headers = Headers(
            [
                ("Via", via),
                ("Max-Forwards", "70"),
                ("From", str(Address(self.local_uri, params={"tag": self.local_tag}))),
                ("To", str(Address(self.remote_uri, params={"tag": self.remote_tag}))),
                ("Call-ID", self.call_id),
                ("CSeq", f"{cseq} {method}"),
                ("Contact", f"<{contact}>"),
            ]
        )
        for route in self.route_set:
            headers.add("Route", route)
        if content_type:
            headers.add("Content-Type", content_type)
        return Request(method, self.remote_target, headers, body)
