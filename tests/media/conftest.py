"""Fixtures for the media runtime tests: an engine on loopback, endpoint pairs, a raw UDP peer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pytest

from voipbin.media.endpoint import MediaEngine, RtpEndpoint
from voipbin.media.g711 import PCMU
from voipbin.media.rtp import RtpError, RtpPacket, is_rtcp

HOST = "127.0.0.1"
RATE = 8000


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    engine = MediaEngine(HOST, 43000, 43999, rtcp_interval=0.25)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


@pytest.fixture
async def pair(engine: MediaEngine) -> tuple[RtpEndpoint, RtpEndpoint]:
    """Two endpoints sending PCMU to each other, with telephone-event on PT 101."""
    a = await engine.open_endpoint()
    b = await engine.open_endpoint()
    a.set_remote(HOST, b.local_port, PCMU, 101)
    b.set_remote(HOST, a.local_port, PCMU, 101)
    return a, b


@dataclass
class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP socket standing in for a phone, recording the RTP it receives."""

    packets: list[RtpPacket] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if is_rtcp(data):
            self.rtcp.append(data)
            return
        with contextlib.suppress(RtpError):
            self.packets.append(RtpPacket.parse(data))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (HOST, port))


@pytest.fixture
async def raw_peer_factory() -> AsyncIterator[Callable[[], Awaitable[RawPeer]]]:
    peers: list[RawPeer] = []

    async def make() -> RawPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=(HOST, 0))
        peers.append(peer)
        return peer

    try:
        yield make
    finally:
        for peer in peers:
            if peer.transport is not None:
                peer.transport.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll until ``predicate`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def tone(frequency: float, seconds: float, amplitude: int = 8000) -> bytes:
    """8 kHz 16-bit mono sine."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype("<i2").tobytes()


def dominant_hz(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * RATE / len(samples))


def loud_frames(frames: list[bytes], threshold: float = 500.0) -> bytes:
    """The frames that carry signal rather than (comfort) silence."""
    return b"".join(f for f in frames if np.abs(np.frombuffer(f, dtype="<i2")).mean() > threshold)
