"""Taps: every frame to every callback, in order; a broken one is detached, the rest carry on."""

from __future__ import annotations

import pytest

from voipbin.media.frames import Taps


def test_taps_in_order_detach_and_survive_a_broken_consumer(caplog: pytest.LogCaptureFixture) -> None:
    taps = Taps("in")
    calls: list[tuple[str, bytes]] = []

    def broken(frame: bytes) -> None:
        calls.append(("broken", frame))
        raise RuntimeError("consumer bug")

    taps.add(lambda frame: calls.append(("first", frame)))
    taps.add(broken)
    detach = taps.add(lambda frame: calls.append(("last", frame)))
    taps.emit(b"1")
    assert calls == [("first", b"1"), ("broken", b"1"), ("last", b"1")]
    assert "in media tap failed" in caplog.text

    detach()
    detach()
    calls.clear()
    taps.emit(b"2")
    assert calls == [("first", b"2")]
