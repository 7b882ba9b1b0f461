"""RTP port allocation: even ports for RTP, the odd one above each for RTCP (RFC 3550 11)."""

from __future__ import annotations


class PortsExhausted(RuntimeError):
    """Every RTP port in the configured range is in use."""


class PortAllocator:
    """Hands out even RTP ports from ``first``..``last`` (inclusive, RTCP ports included).

    Ports are handed out round-robin rather than lowest-free first: a port released
    by a finished call is reused as late as possible, so stray packets still in
    flight to it do not land in a new call.
    """

    def __init__(self, first: int, last: int) -> None:
        first += first % 2
        if not 0 < first < last <= 65535:
            raise ValueError(f"port range {first}-{last} holds no even/odd RTP/RTCP pair")
        self.first = first
        self.last = last
        # The RTCP port (port + 1) must fit in the range too.
        self._ports = range(first, last, 2)
        self._next = 0
        self._in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        return len(self._ports)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> int:
        """A free even port; its RTCP companion is the port + 1."""
        for _ in range(len(self._ports)):
            port = self._ports[self._next]
            self._next = (self._next + 1) % len(self._ports)
            if port not in self._in_use:
                self._in_use.add(port)
                return port
        raise PortsExhausted(f"all {self.capacity} RTP ports in {self.first}-{self.last} are in use")

    def release(self, port: int) -> None:
        """Return a port; releasing one that is not allocated is a no-op."""
        self._in_use.discard(port)
