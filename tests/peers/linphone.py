"""Linphone's console client (Debian ``linphone-cli``: ``linphonec``) as a scripted softphone.

It registers from a linphonerc written here (UDP or TCP only), auto-answers (``-a``), plays a WAV
as its microphone and records what it hears, one WAV per call (``soundcard use files`` with
``play``/``record``). linphonec reads its commands from stdin and prints call events on stdout,
line by line, which a thread here collects.

Quirks: without ``$HOME/.local/share/linphone`` it cannot open its database and never opens a SIP
socket; once that folder exists a pipe on stdin is enough (no TTY, no tmux). The record file is
taken when a call's streams start, so the next call's is named as soon as one ends. Without
``bind_address`` it listens on every interface. ``quit`` leaves at once without un-REGISTERing.
``kill()`` (SIGKILL) and ``restart()`` (a new process on the same SIP and RTP ports, in a fresh
workdir) play a phone that crashes and comes back. linphonec prints nothing on stdout about
registration: ``registered`` and the SIP messages (``messages()``, ``local_rtp_ports()``) are
read from its log (``-d 6``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.live import free_port
from tests.peers.baresip import read_wav

Transport = str  # "udp" | "tcp"


@dataclass
class Linphone:
    """One linphonec process; ``sip_port`` is the platform's, ``user``/``password`` an extension."""

    workdir: Path
    process: subprocess.Popen[bytes]
    transport: Transport
    config: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    _calls_ended: int = 0
    _restarts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stdin_lock: threading.Lock = field(default_factory=threading.Lock)
    _reader: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        user: str,
        password: str,
        domain: str,
        sip_port: int,
        microphone: Path,
        transport: Transport = "udp",
        sip_port_local: int | None = None,
        rtp_port: int | None = None,
        rtp_port_range: int = 40,
    ) -> Linphone:
        """Start a phone. ``sip_port_local``: its own SIP port; its RTP ports are ``rtp_port`` to
        ``rtp_port + rtp_port_range`` (free ones when None). Within a range linphone takes a port
        of its choosing, not the first, and a restarted process chose another one:
        ``rtp_port_range=0`` pins the single port a restart then reuses (one call at a time)."""
        if shutil.which("linphonec") is None:
            raise RuntimeError("linphonec is not installed (Debian package linphone-cli)")
        assert transport in ("udp", "tcp")
        config = {
            "user": user, "password": password, "domain": domain, "sip_port": sip_port,
            "microphone": str(microphone), "transport": transport,
            "local_port": sip_port_local or free_port(), "rtp_port": rtp_port or free_port(),
            "rtp_port_range": rtp_port_range,
        }
        return cls._spawn(workdir, config)

    @classmethod
    def _spawn(cls, workdir: Path, config: dict[str, Any]) -> Linphone:
        user, password, domain = config["user"], config["password"], config["domain"]
        sip_port, transport, microphone = config["sip_port"], config["transport"], config["microphone"]
        local_port, rtp, spread = config["local_port"], config["rtp_port"], config["rtp_port_range"]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        rc = workdir / "linphonerc"
        rc.write_text(
            "\n".join(
                [
                    "[sip]",
                    # One transport only: 0 disables the others (TCP-only means no UDP socket at all).
                    f"sip_port={local_port if transport == 'udp' else 0}",
                    f"sip_tcp_port={local_port if transport == 'tcp' else 0}",
                    "sip_tls_port=0",
                    "bind_address=127.0.0.1",
                    "use_ipv6=0",
                    "default_proxy=0",
                    "register_only_when_network_is_up=0",
                    "auto_net_state_mon=0",
                    "guess_hostname=1",
                    "[net]",
                    "firewall_policy=0",
                    "[rtp]",
                    f"audio_rtp_port={rtp}-{rtp + spread}" if spread else f"audio_rtp_port={rtp}",
                    "bind_address=127.0.0.1",
                    "audio_adaptive_jitt_comp_enabled=1",
                    "[sound]",
                    "echocancellation=0",
                    "[video]",
                    "capture=0",
                    "display=0",
                    "[proxy_0]",
                    f"reg_proxy=<sip:127.0.0.1:{sip_port};transport={transport}>",
                    f"reg_identity=sip:{user}@{domain}",
                    "reg_expires=300",
                    "reg_sendregister=1",
                    "publish=0",
                    "[auth_info_0]",
                    f"username={user}",
                    f"passwd={password}",
                    f"domain={domain}",
                    "",
                ]
            )
        )
        env = {**os.environ, "HOME": str(workdir), "XDG_DATA_HOME": str(workdir / ".local" / "share"),
               "XDG_CONFIG_HOME": str(workdir / ".config")}
        process = subprocess.Popen(
            ["linphonec", "-c", str(rc), "-a", "-d", "6", "-l", str(workdir / "linphone.log")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, cwd=workdir, start_new_session=True,
        )
        phone = cls(workdir, process, transport, config)
        phone._reader = threading.Thread(target=phone._read, name="linphonec-stdout", daemon=True)
        phone._reader.start()
        phone.command("soundcard use files")
        phone.command(f"play {microphone}")
        phone.command(f"record {phone.recording(1)}")
        return phone

    def _read(self) -> None:
        assert self.process.stdout is not None
        with (self.workdir / "linphonec.out").open("w") as out:
            for raw in self.process.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                out.write(line + "\n")
                out.flush()
                with self._lock:
                    self.lines.append(line)
                if re.search(r"^(linphonec> )*Call \d+ with .* (ended|error)", line):
                    # The record file is taken when a call's streams start: name the next one now.
                    with self._lock:
                        self._calls_ended += 1
                        ended = self._calls_ended
                    self.command(f"record {self.recording(ended + 1)}")

    def command(self, line: str) -> None:
        """One linphonec command (``terminate``, ``status register``, ``answer``...)."""
        if self.process.poll() is not None or self.process.stdin is None:
            return
        try:
            with self._stdin_lock:
                self.process.stdin.write(line.encode() + b"\n")
                self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def hangup(self) -> None:
        self.command("terminate")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def local_port(self) -> int:
        """The phone's own SIP port."""
        return int(self.config["local_port"])

    @property
    def rtp_port(self) -> int:
        """The first (with ``rtp_port_range=0`` the only) RTP port of the phone."""
        return int(self.config["rtp_port"])

    @property
    def registered(self) -> bool:
        """Its account's last registration state, from its log, is ``LinphoneRegistrationOk``
        (linphonec prints none on stdout)."""
        states = re.findall(r"moving from state \[\w+\] to \[LinphoneRegistration(\w+)\]", self.log)
        return bool(states) and states[-1] == "Ok"

    def messages(self, direction: str = "sent") -> list[str]:
        """The text of each SIP message the phone sent (or ``"received"``), from its log."""
        marker = "message sent to" if direction == "sent" else r"received \[\d+\] new bytes from"
        found = re.finditer(rf"{marker} [^\n]*\n(.*?)(?=\n\d{{4}}-\d\d-\d\d \d\d:|\Z)", self.log, re.DOTALL)
        return [m.group(1) for m in found]

    def local_rtp_ports(self) -> list[int]:
        """The audio port of each SDP the phone sent (its offers and answers), from its log."""
        ports = []
        for sent in self.messages("sent"):
            found = re.search(r"^m=audio (\d+) ", sent, re.MULTILINE)
            if found:
                ports.append(int(found.group(1)))
        return ports

    def recording(self, call: int) -> Path:
        """Where the ``call``-th call (from 1) is recorded."""
        return self.workdir / f"heard-{call}.wav"

    def said(self, pattern: str) -> bool:
        with self._lock:
            return any(re.search(pattern, line) for line in self.lines)

    @property
    def connected(self) -> int:
        """Calls this phone has answered (its ``Call N ... connected.`` lines)."""
        with self._lock:
            return sum(bool(re.search(r"Call \d+ with .* connected", line)) for line in self.lines)

    @property
    def ended(self) -> int:
        """Calls that ended on this phone (either side hung up)."""
        with self._lock:
            return self._calls_ended

    def heard(self, call: int = 1) -> np.ndarray | None:
        """What the phone recorded during its ``call``-th call, once that call ended on the phone
        and the file is complete; None until then."""
        path = self.recording(call)
        if self.ended < call or not path.exists():
            return None
        try:
            data = read_wav(path)
        except (wave.Error, EOFError, AssertionError):
            return None  # still being written
        return data if len(data) else None

    @property
    def log(self) -> str:
        path = self.workdir / "linphone.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """The phone vanishes: SIGKILL at once, no BYE, no un-REGISTER; ``stop()`` afterwards does
        nothing more; ``restart()`` brings up a new process on the same ports."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session (start_new_session)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=5)
        self.stop()

    def restart(self, workdir: Path | None = None, **changes: Any) -> Linphone:
        """A new linphonec like this one, with the same SIP port, RTP ports and account
        (``changes`` overrides config keys), in ``workdir`` (by default ``<workdir>-restart<N>``
        next to this one's: a fresh linphone database, logs and recordings). Kill or stop this
        one first: the ports must be free."""
        self._restarts += 1
        if workdir is None:
            workdir = self.workdir.with_name(f"{self.workdir.name}-restart{self._restarts}")
        return type(self)._spawn(workdir, {**self.config, **changes})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.command("quit")
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()

