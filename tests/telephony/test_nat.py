"""The platform behind NAT: bound to a private address, started with ``public_address``.

The "host" has one private address (127.0.0.1, where the platform binds) and is reached from
outside at 127.0.0.9 through a port-forwarding NAT (tests/peers/nat.py) that forwards the SIP
port and the RTP range. A baresip phone on 127.0.0.5 registers through 127.0.0.9 and takes the
quickstart's first call. The phone must hear the greeting through the NAT, and nothing the
platform puts on the wire may name its bound address: Via, Contact and SDP say 127.0.0.9.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tenant, make_settings
from tests.live import free_port
from tests.peers import tshark
from tests.peers.baresip import Baresip, tone
from tests.peers.nat import NatForwarder
from tests.telephony.conftest import PHONE_TONE_HZ, until
from tests.telephony.test_quickstart_calls import GREETING, first_call_request, transcribe, words
from voipbin.runtime import Platform

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`"),
    pytest.mark.skipif(not tshark.available(), reason="tshark is installed by `make test`"),
]

PRIVATE = "127.0.0.1"  # the host's own address: the platform binds here
PUBLIC = "127.0.0.9"  # the NAT's outside address: what the platform must advertise
NAT_INSIDE = "127.0.0.2"  # the NAT's address on the private side: clients appear to come from here
PHONE = "127.0.0.5"  # a phone out on the internet
RTP_PORTS = 20  # RTP and RTCP ports forwarded: room for 10 calls


def _free_ports(count: int, low: int, high: int, kinds: tuple[int, ...]) -> int:
    """An even first port whose next ``count`` ports are free on both the private and the public
    address. Chosen below Linux's ephemeral ports (32768 up), so no client socket takes one
    meanwhile, and above the platform's default RTP range, which other tests use."""
    for _ in range(50):
        first = random.randrange(low, high - count, 2)
        held: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                for host in (PRIVATE, PUBLIC):
                    for kind in kinds:
                        sock = socket.socket(socket.AF_INET, kind)
                        held.append(sock)
                        sock.bind((host, port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} free ports in {low}-{high}")


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    """Overrides the shared platform: bound on the private address, advertising the public one."""
    # A fixed SIP port, not 0: the stack would bind TCP on whatever UDP port it was given, which a
    # client's TCP socket may hold.
    sip_port = _free_ports(1, 30002, 30100, (socket.SOCK_DGRAM, socket.SOCK_STREAM))
    first = _free_ports(RTP_PORTS, 30100, 32760, (socket.SOCK_DGRAM,))
    settings = make_settings(
        tmp_path / "data", sip_port=sip_port, public_address=PUBLIC, rtp_port_first=first, rtp_port_last=first + RTP_PORTS - 1,
        insecure_sandbox=True,  # a public address, with the tests' published operator password
    )
    platform = Platform(settings)
    await platform.start()
    yield platform
    await platform.stop()


def start_phone(workdir: Path, *, user: str, password: str, domain: str, proxy: str, microphone: Path) -> Baresip:
    """baresip as tests/peers/baresip.py starts it, but on PHONE and sending everything to ``proxy``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "dump").mkdir(exist_ok=True)
    control_port, local_port, rtp = free_port(), free_port(), free_port()
    (workdir / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"net_interface {PHONE}",
                f"sip_listen {PHONE}:{local_port}",
                "audio_player alsa,null",
                f"audio_source aufile,{microphone}",
                "audio_alert alsa,null",
                "audio_srate 8000",
                "audio_channels 1",
                f"rtp_ports {rtp}-{rtp + 40}",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module alsa.so",
                "module sndfile.so",
                "module ctrl_tcp.so",
                "module_app account.so",
                "module_app menu.so",
                f"snd_path {workdir / 'dump'}",
                f"ctrl_tcp_listen 127.0.0.1:{control_port}",
                "",
            ]
        )
    )
    (workdir / "accounts").write_text(
        f'<sip:{user}@{domain}>;auth_pass={password};answermode=auto;regint=300;'
        f'outbound="sip:{proxy};transport=udp"\n'
    )
    log = (workdir / "baresip.log").open("wb")
    process = subprocess.Popen(["baresip", "-f", str(workdir)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return Baresip(workdir, process, control_port)


@dataclass(frozen=True)
class Frame:
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes

    def __str__(self) -> str:
        return f"{self.src}:{self.sport} -> {self.dst}:{self.dport} {self.payload[:60]!r}"


async def read_frames(path: Path) -> list[Frame]:
    fields = ["frame.time_relative", "ip.src", "udp.srcport", "tcp.srcport", "ip.dst", "udp.dstport", "tcp.dstport", "udp.payload", "tcp.payload"]
    process = await asyncio.create_subprocess_exec(
        "tshark", "-r", str(path), "-Y", "not icmp", "-T", "fields", "-E", "separator=/t", *[a for f in fields for a in ("-e", f)],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    frames = []
    for line in out.decode().splitlines():
        time, src, usport, tsport, dst, udport, tdport, upayload, tpayload = (line.split("\t") + [""] * 9)[:9]
        payload = bytes.fromhex((upayload or tpayload).replace(":", ""))
        frames.append(Frame(float(time), src, int(usport or tsport), dst, int(udport or tdport), payload))
    return frames


def sip_leaks(message: bytes, sip_port: int) -> list[str]:
    """Where a SIP message the platform sent names anything but PUBLIC:sip_port as itself."""
    text = message.decode(errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    is_request = not lines[0].startswith("SIP/2.0")
    headers = [(name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
    problems = []
    if PRIVATE in text:
        problems.append(f"{PRIVATE} in the message")
    vias = [value for name, value in headers if name in ("via", "v")]
    if is_request:
        sent_by = re.match(r"SIP/2\.0/\w+\s+([^;\s]+)", vias[0]) if vias else None
        if sent_by is None or sent_by.group(1) != f"{PUBLIC}:{sip_port}":
            problems.append(f"Via {vias[:1]}")
    cseq = next((value for name, value in headers if name == "cseq"), "")
    if not cseq.endswith("REGISTER"):  # a REGISTER's 200 lists the phone's own bindings
        for name, value in headers:
            if name in ("contact", "m") and f"@{PUBLIC}:{sip_port}>" not in value:
                problems.append(f"Contact {value}")
    for line in body.split("\r\n"):
        if line.startswith("o=") and not line.endswith(f" IN IP4 {PUBLIC}"):
            problems.append(line)
        if line.startswith("c=") and line != f"c=IN IP4 {PUBLIC}":
            problems.append(line)
    return problems


async def test_behind_nat_the_phone_hears_the_first_call_and_only_sees_the_public_address(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    sip_port = platform.sip.stack.port
    media = platform.sip.media.ports
    rtp_ports = range(media.first, media.last + 1)
    body = {"name": "quickstart-phone", "detail": "baresip", "extension": "quickstart1", "password": "secret-pass-1"}
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
    capture_filter = (
        f"host {PUBLIC} or host {PHONE} or (host {PRIVATE} and (port {sip_port} or portrange {media.first}-{media.last}))"
    )
    nat = NatForwarder(PUBLIC, PRIVATE, udp_ports=[sip_port, *rtp_ports], tcp_ports=[sip_port], inside=NAT_INSIDE)
    statuses: list[str] = []
    async with tshark.Capture(tmp_path / "nat.pcap", capture_filter) as capture, nat:
        phone = start_phone(
            tmp_path / "baresip",
            user="quickstart1",
            password="secret-pass-1",
            domain=f"{alice.customer_id}.registrar.voipbin.test",
            proxy=f"{PUBLIC}:{sip_port}",
            microphone=tone(tmp_path / "mic.wav", PHONE_TONE_HZ, seconds=60),
        )
        try:
            await until(lambda: platform.sip.registrations(alice.customer_id, "quickstart1"), timeout=15)
            [binding] = platform.sip.registrations(alice.customer_id, "quickstart1")
            # The registrar saw the NAT's mapping, and will reach the phone through it.
            assert binding.source[:2] == ("udp", NAT_INSIDE) and f"@{PHONE}:" in binding.contact, binding

            source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
            response = await client.post("/v1.0/calls", params=alice.auth, json=first_call_request(source))
            assert response.status_code == 200, response.text
            [group] = response.json()["groupcalls"]
            call_url = f"/v1.0/calls/{group['call_ids'][0]}"
            for _ in range(600):
                current = str((await client.get(call_url, params=alice.auth)).json()["status"])
                if not statuses or statuses[-1] != current:
                    statuses.append(current)
                if current == "hangup":
                    break
                await asyncio.sleep(0.05)
            await until(lambda: phone.heard() is not None, timeout=15)
        finally:
            # Its un-REGISTER goes through the NAT too, inside the capture (so the loop must keep running).
            await asyncio.to_thread(phone.stop)
    frames = await read_frames(capture.path)

    call = (await client.get(call_url, params=alice.auth)).json()
    assert "progressing" in statuses and call["status"] == "hangup" and call["hangup_reason"] == "normal", (statuses, call)

    heard = phone.heard()
    assert heard is not None
    text = await transcribe(platform, heard)
    expected = set(words(GREETING)) - {"voip", "bin", "a"}
    assert len(expected & set(words(text))) >= 0.75 * len(expected), text

    # Both ways through the NAT: SIP, and RTP (the greeting out, the phone's tone in).
    sip = nat.udp[sip_port]
    rtp = nat.udp_total(rtp_ports)
    assert sip.inbound_packets >= 4 and sip.outbound_packets >= 4, sip
    assert rtp.inbound_packets >= 100 and rtp.outbound_packets >= 100, rtp
    assert nat.dropped == 0

    assert frames, "tshark captured nothing"
    # The phone only ever talks to the public address, and SIP only ever reaches it from there.
    from_phone = [f for f in frames if f.src == PHONE]
    assert from_phone and all(f.dst == PUBLIC for f in from_phone), [str(f) for f in from_phone if f.dst != PUBLIC][:5]
    sip_to_phone = [f for f in frames if f.dst == PHONE and f.sport == sip_port]
    assert sip_to_phone and all(f.src == PUBLIC for f in sip_to_phone), [str(f) for f in sip_to_phone if f.src != PUBLIC][:5]
    # Nothing the platform sent names its bound address: checked as it left the platform and as the
    # NAT delivered it.
    platform_sip = [
        f for f in frames if (f.src, f.sport) in ((PRIVATE, sip_port), (PUBLIC, sip_port)) and f.payload.strip()
    ]
    assert any(f.payload.startswith(b"INVITE ") for f in platform_sip)
    assert any(b"\r\nContent-Type: application/sdp" in f.payload for f in platform_sip)
    leaks = {str(f): problems for f in platform_sip if (problems := sip_leaks(f.payload, sip_port))}
    assert not leaks, leaks

    # Media. baresip 1.0 binds RTP on the wildcard address, so its packets leave from 127.0.0.1:
    # tell them by its ports (its SDP answer's m= line, RTCP on the next one).
    answer = next(f.payload for f in from_phone if b"\r\nm=audio " in f.payload)
    found = re.search(rb"\r\nm=audio (\d+) ", answer)
    assert found is not None
    phone_media = {int(found.group(1)), int(found.group(1)) + 1}
    sent = [f for f in frames if f.sport in phone_media]
    assert len(sent) >= 100 and all(f.dst == PUBLIC for f in sent), [str(f) for f in sent if f.dst != PUBLIC][:5]
    # Until the phone's own packets reach it, the platform sends to the SDP address (on a real
    # network the NAT's masquerading carries those); once they do, only to the NAT's mapping.
    to_phone = [f for f in frames if f.dport in phone_media]
    direct = [f for f in to_phone if f.src != PUBLIC]
    assert len(to_phone) >= 100 and len(direct) <= 3, [str(f) for f in direct]
    for frame in direct:
        assert frame.src == PRIVATE and frame.sport in rtp_ports, frame
        # RTP latches on any packet of the phone's stream, RTCP on its first report (SR or RR).
        latches = [
            f.time for f in frames
            if (f.src, f.dst, f.dport) == (NAT_INSIDE, PRIVATE, frame.sport)
            and (frame.sport % 2 == 0 or f.payload[1:2] in (b"\xc8", b"\xc9"))
        ]
        assert frame.time < min(latches, default=float("inf")) + 0.1, (str(frame), latches[:1])
