"""The conference mixer: mix-minus, mute, deaf, the limiter and talk detection, tick by tick."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from voipbin.media.endpoint import RtpEndpoint
from voipbin.media.frames import FRAME_SAMPLES
from voipbin.media.mixer import TALK_START_FRAMES, TALK_STOP_FRAMES, Mixer, MixLeg


class FakeEndpoint:
    """What the mixer uses of an endpoint: an in-tap it feeds frames through, and an outgoing feed."""

    def __init__(self) -> None:
        self.tap: Callable[[bytes], None] | None = None
        self.feed: deque[bytes] | None = None
        self.owner: Any = None

    def add_tap(self, direction: str, callback: Callable[[bytes], None]) -> Callable[[], None]:
        assert direction == "in"
        self.tap = callback

        def untap() -> None:
            self.tap = None

        return untap

    def attach_feed(self, owner: Any, frames: deque[bytes]) -> None:
        assert self.owner is None, "already bridged"
        self.owner, self.feed = owner, frames

    def detach_feed(self, owner: Any) -> None:
        if self.owner is owner:
            self.owner, self.feed = None, None

    def hear(self, samples: np.ndarray) -> None:
        assert self.tap is not None
        self.tap(samples.astype("<i2").tobytes())

    def sent(self) -> np.ndarray:
        assert self.feed is not None
        return np.frombuffer(self.feed.popleft(), dtype="<i2").astype(np.int32)


def constant(value: int) -> np.ndarray:
    return np.full(FRAME_SAMPLES, value, dtype=np.int32)


def leg(mixer: Mixer, key: str, **options: bool) -> tuple[FakeEndpoint, MixLeg]:
    endpoint = FakeEndpoint()
    return endpoint, mixer.add(cast(RtpEndpoint, endpoint), key, **options)


def test_each_leg_hears_the_others_and_not_itself() -> None:
    mixer = Mixer()
    (a, _), (b, _), (c, _) = leg(mixer, "a"), leg(mixer, "b"), leg(mixer, "c")
    a.hear(constant(100))
    b.hear(constant(20))
    c.hear(constant(3))
    mixer.mix()
    assert (a.sent() == 23).all() and (b.sent() == 103).all() and (c.sent() == 120).all()


def test_a_leg_that_sent_nothing_this_tick_counts_as_silence() -> None:
    mixer = Mixer()
    (a, _), (b, _) = leg(mixer, "a"), leg(mixer, "b")
    a.hear(constant(50))
    mixer.mix()
    assert (b.sent() == 50).all() and (a.sent() == 0).all()
    mixer.mix()  # nothing new from a: it is not heard twice
    assert (b.sent() == 0).all()


def test_a_muted_leg_is_not_heard_but_still_hears_and_a_deaf_one_is_sent_nothing() -> None:
    mixer = Mixer()
    (a, muted), (b, _), (c, deaf) = leg(mixer, "a", muted=True), leg(mixer, "b"), leg(mixer, "c", deaf=True)
    a.hear(constant(100))
    b.hear(constant(20))
    c.hear(constant(3))
    mixer.mix()
    assert (b.sent() == 3).all() and (a.sent() == 23).all()
    assert c.feed is not None and not c.feed  # deaf: its endpoint plays comfort silence
    muted.muted, deaf.deaf = False, False
    for endpoint, value in ((a, 100), (b, 20), (c, 3)):
        endpoint.hear(constant(value))
    mixer.mix()
    assert (b.sent() == 103).all() and (c.sent() == 120).all()


def test_a_sum_past_16_bits_is_scaled_down_not_wrapped() -> None:
    mixer = Mixer()
    (a, _), (b, _), (c, _) = leg(mixer, "a"), leg(mixer, "b"), leg(mixer, "c")
    wave = (np.sin(np.arange(FRAME_SAMPLES) / 5) * 30000).astype(np.int32)
    a.hear(wave)
    b.hear(wave)
    c.hear(constant(0))
    mixer.mix()
    heard = c.sent()
    assert np.abs(heard).max() <= 32767
    assert np.corrcoef(heard, wave)[0, 1] > 0.99  # the same wave, quieter: no wrap-around, no clipping


def test_the_whole_mix_goes_to_on_mix() -> None:
    mixes: list[bytes] = []
    mixer = Mixer(on_mix=mixes.append)
    (a, _), (b, _) = leg(mixer, "a"), leg(mixer, "b")
    a.hear(constant(7))
    b.hear(constant(5))
    mixer.mix()
    assert (np.frombuffer(mixes[0], dtype="<i2") == 12).all()


def test_talking_starts_after_a_few_loud_frames_and_ends_after_half_a_second_of_quiet() -> None:
    changes: list[tuple[str, bool]] = []
    mixer = Mixer(on_talking=lambda leg, talking: changes.append((leg.key, talking)))
    (a, _), (_b, _) = leg(mixer, "a"), leg(mixer, "b")
    for _ in range(TALK_START_FRAMES):
        a.hear(constant(2000))
        mixer.mix()
    assert changes == [("a", True)]
    for _ in range(TALK_STOP_FRAMES - 1):
        a.hear(constant(10))
        mixer.mix()
    assert changes == [("a", True)]
    mixer.mix()  # nothing received is quiet too
    assert changes == [("a", True), ("a", False)]


def test_a_leg_that_leaves_gives_its_endpoint_back() -> None:
    mixer = Mixer()
    (a, first), (b, _) = leg(mixer, "a"), leg(mixer, "b")
    first.close()
    assert a.owner is None and a.tap is None and [m.key for m in mixer.legs] == ["b"]
    first.close()  # idempotent
    b.hear(constant(9))
    mixer.mix()
    assert b.sent().max() == 0
