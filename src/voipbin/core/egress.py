"""Where customer input may make the platform connect: public addresses only, unless the operator
allows more.

A webhook URI, a ``webhook_send`` or ``play`` URL, a ``sip:`` destination: each names a place the
platform then connects to from inside the operator's network. Left alone, a customer could reach
the host's own services (``127.0.0.1:6379``), the private network, or a cloud's metadata service
(``169.254.169.254``). The rule is checked on the addresses a name resolves to, at the moment of
connecting, and the connection goes to exactly the address checked, so a name that resolves to a
public address once and to a private one the next time (DNS rebinding) gains nothing; every
redirect is a new connection and is checked again. Literal forms such as ``127.1``, ``2130706433``,
``0x7f000001`` or ``[::ffff:127.0.0.1]`` resolve to what they stand for and meet the same rule.

The operator names ranges to allow anyway (``--egress-allow 10.0.0.0/8,127.0.0.0/8``): a lab, a
private webhook receiver, the tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_REDIRECTS = 5


class EgressBlocked(Exception):
    """A connection the policy refuses; the message names the host, never what is behind it."""


def is_public(address: IPAddress) -> bool:
    """Reachable on the internet, and not a loopback, private, link-local, shared, reserved or
    multicast address, including IPv4 addresses carried inside IPv6 ones."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
        if address.teredo is not None:
            return False
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class EgressPolicy:
    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_setting(cls, text: str) -> EgressPolicy:
        """``"10.0.0.0/8, 127.0.0.1"``: ranges allowed beside public addresses. ValueError names a bad one."""
        networks = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"egress allow-list entry {item!r} is not an address or CIDR range") from None
        return cls(tuple(networks))

    def permits(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return is_public(ip) or any(ip in network for network in self.allowed if ip.version == network.version)

    def refusal(self, host: str) -> EgressBlocked:
        return EgressBlocked(
            f"{host} is not a public address; the platform connects only to public addresses "
            "(the operator may allow more with --egress-allow)"
        )

    async def resolve(self, host: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> list[str]:
        """The permitted addresses ``host`` resolves to now; EgressBlocked when there are none."""
        host = host.strip("[]")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=kind)
        except (OSError, UnicodeError):
            raise EgressBlocked(f"{host} does not resolve") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        permitted = [address for address in addresses if self.permits(address)]
        if not permitted:
            raise self.refusal(host)
        return permitted

    def literal_problem(self, host: str) -> str | None:
        """Why a host written as an address (``10.0.0.1``, ``127.1``, ``0x7f000001``, ``[::1]``) is
        refused; None for names, which are checked when connecting."""
        try:
            infos = socket.getaddrinfo(host.strip("[]"), None, flags=socket.AI_NUMERICHOST)
        except (OSError, UnicodeError):
            return None
        if all(self.permits(str(info[4][0])) for info in infos):
            return None
        return str(self.refusal(host))


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy permits."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception = self._policy.refusal(host)
        for address in await self._policy.resolve(host, port):
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise EgressBlocked("connections to local sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(trust_env=False)
        # The pool httpx builds, with the guarded backend: every connection, redirects included.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(policy),
        )


def egress_client(policy: EgressPolicy, *, timeout: float, follow_redirects: bool = False) -> httpx.AsyncClient:
    """An HTTP client for URLs a customer gave: no proxies from the environment, every connection checked."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
    )


def describe_failure(error: Exception) -> str:
    """What went wrong reaching a customer's URL, in words that tell a port scanner nothing."""
    if isinstance(error, EgressBlocked):
        return str(error)
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.ConnectError):
        return "could not connect"
    if isinstance(error, httpx.TooManyRedirects):
        return f"more than {MAX_REDIRECTS} redirects"
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL | ValueError):
        return "not an http:// or https:// URL"
    return "the request failed"
