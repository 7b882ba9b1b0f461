"""The location service: where each extension's phones can be reached right now.

In-process for the embedded default; the interface is what a shared (Redis) store implements so
that a call placed on one node reaches a phone registered on another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# (transport, host, port): where the REGISTER came from, which is where requests to the phone go
# (behind NAT the Contact's own address is often unreachable).
Peer = tuple[str, str, int]


@dataclass(frozen=True)
class Binding:
    customer_id: str
    extension: str
    contact: str
    source: Peer
    expires_at: float
    call_id: str = ""
    cseq: int = 0
    user_agent: str = ""
    registered_at: float = 0.0

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


@dataclass
class LocationService:
    _bindings: dict[tuple[str, str], dict[str, Binding]] = field(default_factory=dict)

    def save(self, binding: Binding) -> None:
        self._bindings.setdefault((binding.customer_id, binding.extension), {})[binding.contact] = binding

    def remove(self, customer_id: str, extension: str, contact: str | None = None) -> list[Binding]:
        """Drop one contact, or all of an extension's when ``contact`` is None."""
        key = (customer_id, extension)
        current = self._bindings.get(key, {})
        if contact is None:
            removed = list(current.values())
            current.clear()
        else:
            removed = [b for b in [current.pop(contact, None)] if b is not None]
        if not current:
            self._bindings.pop(key, None)
        return removed

    def lookup(self, customer_id: str, extension: str, now: float) -> list[Binding]:
        """Live bindings, most recently registered first (the likeliest phone to answer)."""
        live = [b for b in self._bindings.get((customer_id, extension), {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: b.registered_at, reverse=True)

    def expire(self, now: float) -> list[Binding]:
        expired = [b for group in self._bindings.values() for b in group.values() if b.expires_at <= now]
        for binding in expired:
            self.remove(binding.customer_id, binding.extension, binding.contact)
        return expired

    def all(self) -> Iterable[Binding]:
        for group in self._bindings.values():
            yield from group.values()
