"""RTP port allocation."""

from __future__ import annotations

import pytest

from voipbin.media.ports import PortAllocator, PortsExhausted


def test_hands_out_even_ports_with_room_for_rtcp() -> None:
    ports = PortAllocator(10001, 10008)  # an odd start is rounded up
    got = [ports.allocate() for _ in range(ports.capacity)]
    assert got == [10002, 10004, 10006]  # 10008 has no 10009 in range
    assert all(port % 2 == 0 and port + 1 <= 10008 for port in got)
    assert ports.in_use == 3


def test_exhaustion_raises_and_release_makes_room() -> None:
    ports = PortAllocator(20000, 20003)
    first, second = ports.allocate(), ports.allocate()
    assert first != second
    with pytest.raises(PortsExhausted, match="20000-20003"):
        ports.allocate()
    ports.release(first)
    assert ports.allocate() == first
    ports.release(12345)  # not ours: ignored
    assert ports.in_use == 2


def test_released_ports_are_reused_last() -> None:
    ports = PortAllocator(30000, 30009)
    a = ports.allocate()
    ports.release(a)
    # Round-robin: the port a call just left is not the next one handed out.
    assert ports.allocate() != a


def test_never_hands_out_a_port_in_use() -> None:
    ports = PortAllocator(40000, 40099)
    held: set[int] = set()
    for i in range(500):
        if len(held) == ports.capacity or (held and i % 3 == 0):
            ports.release(held.pop())
        port = ports.allocate()
        assert port not in held
        held.add(port)


@pytest.mark.parametrize(("first", "last"), [(5000, 5000), (5001, 5002), (0, 10), (65534, 65536)])
def test_invalid_ranges(first: int, last: int) -> None:
    with pytest.raises(ValueError):
        PortAllocator(first, last)
