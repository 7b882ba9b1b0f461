"""The asyncio media runtime over real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.media.conftest import HOST, RawPeer, dominant_hz, loud_frames, tone, wait_until
from voipbin.media.dtmf import DtmfError
from voipbin.media.endpoint import FRAME_BYTES, MediaEngine, RtpEndpoint, bridge
from voipbin.media.g711 import PCMA, PCMU
from voipbin.media.ports import PortsExhausted
from voipbin.media.rtp import RtpPacket, build_receiver_report, parse_rtcp, seq_diff, ts_diff

PeerFactory = Callable[[], Awaitable[RawPeer]]


def constant_pcm(value: int, frames: int) -> bytes:
    return np.full(frames * 160, value, dtype="<i2").tobytes()


async def test_tone_both_ways_without_loss(pair: tuple[RtpEndpoint, RtpEndpoint]) -> None:
    a, b = pair
    heard_by_a: list[bytes] = []
    heard_by_b: list[bytes] = []
    a.add_tap("in", heard_by_a.append)
    b.add_tap("in", heard_by_b.append)

    outcomes = await asyncio.wait_for(
        asyncio.gather(a.play(tone(440, 0.6)).done, b.play(tone(1000, 0.6)).done), timeout=3
    )
    assert list(outcomes) == ["finished", "finished"]
    # The jitter buffer holds back 60 ms: let the tail play out.
    await wait_until(lambda: len(loud_frames(heard_by_b)) >= 29 * FRAME_BYTES)
    await wait_until(lambda: len(loud_frames(heard_by_a)) >= 29 * FRAME_BYTES)

    assert dominant_hz(loud_frames(heard_by_b)) == pytest.approx(440, abs=5)
    assert dominant_hz(loud_frames(heard_by_a)) == pytest.approx(1000, abs=5)
    for endpoint in pair:
        stats = endpoint.stats()
        assert stats.packets_received >= 30
        assert stats.lost == 0
        assert stats.malformed == 0
        assert stats.bytes_received == 160 * stats.packets_received


async def test_comfort_silence_flows_when_nothing_plays(pair: tuple[RtpEndpoint, RtpEndpoint]) -> None:
    a, b = pair
    heard: list[bytes] = []
    b.add_tap("in", heard.append)
    start = a.stats().packets_sent
    await asyncio.sleep(0.5)
    sent = a.stats().packets_sent - start
    assert 18 <= sent <= 32  # one per 20 ms
    await wait_until(lambda: b.stats().packets_received >= a.stats().packets_sent - 5)
    assert loud_frames(heard, threshold=50) == b""
    assert b.stats().lost == 0


async def test_consecutive_prompts_are_one_continuous_stream(
    engine: MediaEngine, raw_peer_factory: PeerFactory
) -> None:
    peer = await raw_peer_factory()
    endpoint = await engine.open_endpoint()
    endpoint.set_remote(HOST, peer.port, PCMU)
    first = endpoint.play(constant_pcm(4000, 3))
    second = endpoint.play(constant_pcm(-4000, 3))
    assert await asyncio.wait_for(second.done, 2) == "finished"
    assert first.done.result() == "finished"
    assert (first.frames_sent, second.frames_sent) == (3, 3)
    await wait_until(lambda: len(peer.packets) >= 12)

    packets = peer.packets
    for previous, packet in itertools.pairwise(packets):
        assert seq_diff(packet.sequence_number, previous.sequence_number) == 1
        assert ts_diff(packet.timestamp, previous.timestamp) == 160
        assert packet.ssrc == previous.ssrc
    payloads = [p.payload for p in packets]
    one, two = PCMU.encode(constant_pcm(4000, 1)), PCMU.encode(constant_pcm(-4000, 1))
    start = payloads.index(one)
    assert payloads[start : start + 6] == [one] * 3 + [two] * 3  # no gap between the prompts
    assert [p.marker for p in packets[start : start + 7]] == [True, False, False, True, False, False, False]
    assert set(payloads[start + 6 :]) == {PCMU.silence()}


async def test_flush_and_stop(pair: tuple[RtpEndpoint, RtpEndpoint]) -> None:
    a, _ = pair
    long = a.play(tone(440, 2.0))
    queued = [a.play(tone(440, 0.1)), a.play(tone(440, 0.1))]
    await wait_until(lambda: long.frames_sent > 0)
    a.flush()
    assert [await p.done for p in queued] == ["flushed", "flushed"]
    assert not long.done.done() and a.playing

    a.stop()
    assert await long.done == "stopped"
    assert 0 < long.frames_sent < 100
    assert not a.playing

    current, waiting = a.play(tone(440, 2.0)), a.play(tone(440, 0.1))
    await wait_until(lambda: current.frames_sent > 0)
    a.stop()
    assert (await current.done, await waiting.done) == ("stopped", "flushed")
    assert waiting.frames_sent == 0

    short = a.play(b"\x01\x00" * 10)  # under one frame: padded, still played
    assert await asyncio.wait_for(short.done, 1) == "finished"
    assert short.frames_sent == 1
    assert short.id != current.id
    with pytest.raises(ValueError):
        a.play(b"\x00")


async def test_streamed_playback(pair: tuple[RtpEndpoint, RtpEndpoint]) -> None:
    a, b = pair
    heard: list[bytes] = []
    b.add_tap("in", heard.append)
    pcm = tone(440, 0.5)
    closed = asyncio.Event()

    async def tts() -> AsyncIterator[bytes]:
        try:
            for i in range(0, len(pcm), 999):  # odd chunk sizes, split mid-sample
                await asyncio.sleep(0.01)
                yield pcm[i : i + 999]
        finally:
            closed.set()

    playback = a.play_stream(tts())
    assert await asyncio.wait_for(playback.done, 3) == "finished"
    assert playback.frames_sent == 25
    assert closed.is_set()
    await wait_until(lambda: len(loud_frames(heard)) >= 24 * FRAME_BYTES)
    assert dominant_hz(loud_frames(heard)) == pytest.approx(440, abs=5)


async def test_streamed_playback_stopped_or_failing(pair: tuple[RtpEndpoint, RtpEndpoint]) -> None:
    a, _ = pair
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                await asyncio.sleep(0.02)
                yield bytes(FRAME_BYTES)
        finally:
            closed.set()

    playback = a.play_stream(endless())
    await wait_until(lambda: playback.frames_sent >= 3)
    a.stop()
    assert await playback.done == "stopped"
    await asyncio.wait_for(closed.wait(), 1)  # the source is closed, not left running

    async def broken() -> AsyncIterator[bytes]:
        yield bytes(3 * FRAME_BYTES)
        raise ConnectionError("TTS went away")

    failed = a.play_stream(broken())
    after = a.play(bytes(FRAME_BYTES))
    assert await asyncio.wait_for(failed.done, 2) == "failed"
    assert isinstance(failed.error, ConnectionError)
    assert failed.frames_sent == 3  # what arrived was still played
    assert await asyncio.wait_for(after.done, 1) == "finished"


async def test_latching_follows_the_real_source(engine: MediaEngine, raw_peer_factory: PeerFactory) -> None:
    phone = await raw_peer_factory()
    advertised = await raw_peer_factory()  # where the phone's (wrong) SDP says to send
    stranger = await raw_peer_factory()
    endpoint = await engine.open_endpoint()
    endpoint.set_remote(HOST, advertised.port, PCMU, 101)
    await wait_until(lambda: len(advertised.packets) >= 2)
    assert not endpoint.latched

    # Wrong payload type from anyone does not latch.
    stranger.send(
        RtpPacket(payload_type=18, sequence_number=1, ssrc=7, payload=b"x" * 20).serialize(),
        endpoint.local_port,
    )
    await asyncio.sleep(0.06)
    assert not endpoint.latched

    for seq in range(3):
        packet = RtpPacket(
            payload_type=0, sequence_number=seq, timestamp=160 * seq, ssrc=0xABC, payload=b"\xff" * 160
        )
        phone.send(packet.serialize(), endpoint.local_port)
    await wait_until(lambda: endpoint.latched)
    assert endpoint.remote == (HOST, phone.port)
    await wait_until(lambda: len(phone.packets) >= 3)

    # Someone else's stream at our port is dropped and does not steal the latch.
    stranger.send(
        RtpPacket(payload_type=0, sequence_number=9, ssrc=0xDEF, payload=b"\xff" * 160).serialize(),
        endpoint.local_port,
    )
    await wait_until(lambda: endpoint.stats().unexpected == 2)
    assert endpoint.remote == (HOST, phone.port)
    assert endpoint.stats().packets_received == 3


async def test_dtmf_both_ways(pair: tuple[RtpEndpoint, RtpEndpoint]) -> None:
    a, b = pair
    got_a: list[str] = []
    got_b: list[str] = []
    a.on_dtmf = got_a.append
    b.on_dtmf = got_b.append
    a.send_dtmf("159#", duration_ms=60)
    b.send_dtmf("*0D")
    await wait_until(lambda: len(got_b) == 4 and len(got_a) == 3)
    assert "".join(got_b) == "159#"
    assert "".join(got_a) == "*0D"
    await asyncio.sleep(0.1)
    assert a.stats().lost == b.stats().lost == 0
    assert b.stats().jitter_ms < 20  # event timestamps do not count as network jitter

    with pytest.raises(DtmfError):
        a.send_dtmf("12X")
    with pytest.raises(DtmfError):
        a.send_dtmf("1", duration_ms=10_000)


async def test_dtmf_needs_negotiated_telephone_event(engine: MediaEngine) -> None:
    endpoint = await engine.open_endpoint()
    endpoint.set_remote(HOST, 9, PCMA)
    with pytest.raises(DtmfError):
        endpoint.send_dtmf("1")


async def test_garbage_is_counted_and_the_stream_keeps_flowing(
    pair: tuple[RtpEndpoint, RtpEndpoint], raw_peer_factory: PeerFactory
) -> None:
    a, b = pair
    attacker = await raw_peer_factory()
    garbage = [
        b"",
        b"\x00",
        b"hello world, not RTP at all",
        bytes(range(256)),
        b"\x80" * 11,  # shorter than an RTP header
        b"\x90\x00" + bytes(10) + b"\x00\x01\x00\x09",  # extension longer than the packet
        b"\xa0\x00" + bytes(10),  # padding bit with a zero count
        b"\x81\xc8\x00\x40" + bytes(8),  # RTCP length beyond the datagram
        np.random.default_rng(1).bytes(172),
    ]
    for data in garbage:
        attacker.send(data, b.local_port)
        attacker.send(data, b.local_port + 1)
    await wait_until(lambda: b.stats().malformed >= 2 * len(garbage) - 4)
    before = b.stats().packets_received
    heard: list[bytes] = []
    b.add_tap("in", heard.append)
    await asyncio.wait_for(a.play(tone(440, 0.3)).done, 2)
    await wait_until(lambda: len(loud_frames(heard)) >= 14 * FRAME_BYTES)
    assert b.stats().packets_received >= before + 15
    assert dominant_hz(loud_frames(heard)) == pytest.approx(440, abs=10)
    assert b.remote == (HOST, a.local_port)


async def test_rtcp_reports_flow_both_ways(
    engine: MediaEngine, pair: tuple[RtpEndpoint, RtpEndpoint], raw_peer_factory: PeerFactory
) -> None:
    a, b = pair
    await wait_until(lambda: a.stats().rtt_ms is not None and b.stats().rtt_ms is not None, timeout=4)
    for endpoint in pair:
        stats = endpoint.stats()
        assert stats.rtcp_sent >= 1 and stats.rtcp_received >= 1
        assert stats.rtt_ms is not None and 0 <= stats.rtt_ms < 500

    # Reports go to the RTP port + 1, and a BYE on close.
    peer = await raw_peer_factory()
    c = await engine.open_endpoint()
    c.set_remote(HOST, peer.port - 1, PCMU)
    await wait_until(lambda: len(peer.rtcp) >= 1, timeout=2)
    kinds = {type(p).__name__ for p in parse_rtcp(peer.rtcp[0])}
    assert kinds == {"RtcpSrPacket"}
    # Their reports parse without upsetting us, even about unknown sources.
    peer.send(build_receiver_report(1234), c.local_port + 1)
    await wait_until(lambda: c.stats().rtcp_received >= 1)
    received = len(peer.rtcp)
    await c.close()
    await wait_until(lambda: len(peer.rtcp) > received)
    assert "RtcpByePacket" in {type(p).__name__ for p in parse_rtcp(peer.rtcp[-1])}


async def test_hold_sends_nothing_but_keeps_time(engine: MediaEngine, raw_peer_factory: PeerFactory) -> None:
    peer = await raw_peer_factory()
    endpoint = await engine.open_endpoint()
    endpoint.set_remote(HOST, peer.port, PCMU, direction="recvonly")
    prompt = endpoint.play(constant_pcm(1000, 3))
    assert await asyncio.wait_for(prompt.done, 1) == "finished"
    endpoint.set_remote("0.0.0.0", peer.port, PCMU)  # RFC 2543 hold
    await asyncio.sleep(0.1)
    assert peer.packets == []

    endpoint.set_remote(HOST, peer.port, PCMU)  # resumed
    await wait_until(lambda: len(peer.packets) >= 2)
    assert peer.packets[0].marker  # a new talkspurt after the pause


async def test_bridge_forwards_audio_both_ways(engine: MediaEngine) -> None:
    caller, leg_a, leg_b, callee = [await engine.open_endpoint() for _ in range(4)]
    caller.set_remote(HOST, leg_a.local_port, PCMU)
    leg_a.set_remote(HOST, caller.local_port, PCMU)
    leg_b.set_remote(HOST, callee.local_port, PCMA)  # the two legs need not share a codec
    callee.set_remote(HOST, leg_b.local_port, PCMA)
    heard_by_callee: list[bytes] = []
    heard_by_caller: list[bytes] = []
    callee.add_tap("in", heard_by_callee.append)
    caller.add_tap("in", heard_by_caller.append)

    link = bridge(leg_a, leg_b)
    with pytest.raises(RuntimeError):
        bridge(leg_a, callee)
    prompts = [caller.play(tone(440, 0.6)).done, callee.play(tone(1000, 0.6)).done]
    await asyncio.wait_for(asyncio.gather(*prompts), 3)
    await wait_until(lambda: len(loud_frames(heard_by_callee)) >= 25 * FRAME_BYTES)
    await wait_until(lambda: len(loud_frames(heard_by_caller)) >= 25 * FRAME_BYTES)
    assert dominant_hz(loud_frames(heard_by_callee)) == pytest.approx(440, abs=5)
    assert dominant_hz(loud_frames(heard_by_caller)) == pytest.approx(1000, abs=5)

    await asyncio.sleep(0.2)  # let the tail through the two jitter buffers
    link.close()
    link.close()
    heard_by_callee.clear()
    await asyncio.wait_for(caller.play(tone(440, 0.3)).done, 2)
    await asyncio.sleep(0.15)
    assert loud_frames(heard_by_callee) == b""
    bridge(leg_a, callee).close()  # free to bridge again


async def test_taps_can_be_removed_and_a_broken_tap_is_detached(
    pair: tuple[RtpEndpoint, RtpEndpoint],
) -> None:
    a, _ = pair
    out: list[bytes] = []
    calls = 0

    def broken(frame: bytes) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("consumer bug")

    remove = a.add_tap("out", out.append)
    a.add_tap("in", broken)
    await wait_until(lambda: len(out) >= 5)
    remove()
    remove()
    count = len(out)
    await asyncio.sleep(0.1)
    assert len(out) == count
    assert calls == 1
    assert all(len(frame) == FRAME_BYTES for frame in out)
    with pytest.raises(ValueError):
        a.add_tap("sideways", out.append)  # type: ignore[arg-type]


async def test_ticker_lateness_is_recorded(
    pair: tuple[RtpEndpoint, RtpEndpoint], engine: MediaEngine
) -> None:
    await asyncio.sleep(0.3)
    lateness = engine.lateness
    assert lateness.count >= 10
    assert 0 <= lateness.p50 <= lateness.p99 < 0.050


async def test_close_is_idempotent_and_releases_ports(engine: MediaEngine) -> None:
    endpoint = await engine.open_endpoint()
    endpoint.set_remote(HOST, 9, PCMU)
    pending = endpoint.play(tone(440, 1.0))
    assert engine.ports.in_use == 1
    await endpoint.close()
    await endpoint.close()
    assert endpoint.closed
    assert await pending.done == "stopped"
    assert endpoint.play(bytes(FRAME_BYTES)).done.result() == "stopped"
    assert engine.ports.in_use == 0 and engine.endpoints == []


async def test_port_exhaustion_and_reuse() -> None:
    engine = MediaEngine(HOST, 44100, 44103)  # room for two RTP/RTCP pairs
    await engine.start()
    try:
        first = await engine.open_endpoint()
        second = await engine.open_endpoint()
        assert {first.local_port, second.local_port} == {44100, 44102}
        with pytest.raises(PortsExhausted):
            await engine.open_endpoint()
        await first.close()
        again = await engine.open_endpoint()
        assert again.local_port == first.local_port
    finally:
        await engine.stop()
    assert engine.ports.in_use == 0


# ---------------------------------------------------------------- sans-IO: no sockets, a fake clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unbound_endpoint(clock: FakeClock) -> RtpEndpoint:
    endpoint = RtpEndpoint(MediaEngine(HOST, 50000, 50001, clock=clock), 50000)
    endpoint.set_remote("192.0.2.1", 4000, PCMU, 101)
    return endpoint


def rtp(seq: int, ssrc: int = 0xAAA, payload_type: int = 0) -> bytes:
    return RtpPacket(payload_type, False, seq, 160 * seq, ssrc, b"\xff" * 160).serialize()


def test_source_changes_after_latching() -> None:
    clock = FakeClock()
    endpoint = unbound_endpoint(clock)
    nat = ("198.51.100.9", 31000)
    endpoint._on_rtp_datagram(rtp(1), nat)
    assert endpoint.latched and endpoint.remote == nat
    # A PBX switching the stream it relays: new SSRC, same address, accepted.
    endpoint._on_rtp_datagram(rtp(500, ssrc=0xBBB), nat)
    # The NAT mapping moved: the same stream from a new port, followed.
    endpoint._on_rtp_datagram(rtp(501, ssrc=0xBBB), ("198.51.100.9", 31002))
    assert endpoint.remote == ("198.51.100.9", 31002)
    # A different stream from elsewhere is not ours.
    endpoint._on_rtp_datagram(rtp(7, ssrc=0xCCC), ("203.0.113.5", 5000))
    assert endpoint.remote == ("198.51.100.9", 31002)
    stats = endpoint.stats()
    assert (stats.packets_received, stats.unexpected, stats.lost) == (3, 1, 0)
    # New SDP: back to the advertised address until the peer's packets say otherwise.
    endpoint.set_remote("192.0.2.2", 4002, PCMU, 101)
    assert not endpoint.latched and endpoint.remote == ("192.0.2.2", 4002)


rtp_shaped = st.builds(
    lambda first, pt, seq, ts, ssrc, payload: (
        bytes([0x80 | first, pt])
        + seq.to_bytes(2, "big")
        + ts.to_bytes(4, "big")
        + ssrc.to_bytes(4, "big")
        + payload
    ),
    st.integers(0, 0x3F),
    st.sampled_from([0, 8, 101, 0x80, 0xE5, 200, 201, 203]),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF_FFFF),
    st.sampled_from([0xAAA, 0xBBB]),
    st.binary(max_size=48),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.one_of(st.binary(max_size=64), rtp_shaped)), max_size=60))
def test_no_datagram_crashes_the_endpoint(datagrams: list[tuple[bool, bytes]]) -> None:
    clock = FakeClock()
    endpoint = unbound_endpoint(clock)
    for to_rtcp_port, data in datagrams:
        if to_rtcp_port:
            endpoint._on_rtcp_datagram(data, ("192.0.2.1", 4001))
        else:
            endpoint._on_rtp_datagram(data, ("192.0.2.1", 4000))
        clock.now += 0.007
        endpoint._tick(clock.now)
    stats = endpoint.stats()
    assert stats.malformed + stats.unexpected + stats.packets_received + stats.rtcp_received <= len(datagrams)
