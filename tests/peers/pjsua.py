"""PJSIP (PyPI ``pjsua2-python``) as a scripted softphone, in a process of its own.

The parent (``Pjsua``, used by the tests) starts this very file as a script; the child runs a
pjsua2 Endpoint on one transport (UDP or TCP only) with the null sound device, registers, answers
every call, plays the microphone WAV into it and records what it hears (one 8 kHz WAV per call).
The child reads JSON commands on stdin (``{"command": "hangup"}``, ``{"command": "dial", "uri":
...}``, ``{"command": "quit"}``) and writes JSON events on its stdout (registration, call states,
media with its RTP ports, the SIP transactions of each call, finished recordings); pjlib's own
output goes to the log file. pjsua2's threads thus never share the pytest process, and a crash
in the C library cannot take pytest down.

Events (``phone.events``, a list; ``phone.events("tsx", method="INVITE")`` filters it):
``{"event": "registration", "code", "reason", "expires"}``;
``{"event": "call", "call": n, "direction": "incoming"|"outgoing", "state": "INCOMING"|"CALLING"|
"EARLY"|"CONNECTING"|"CONFIRMED"|"DISCONNECTED", "code", "reason"}``;
``{"event": "media", "call": n, "local_rtp": "ip:port", "local_rtp_port": int, "remote_rtp": "ip:port"}``;
``{"event": "tsx", "call": n, "method": "INVITE"|"UPDATE"|"BYE"|..., "direction": "sent"|"received",
"state": "CALLING"|"TRYING"|"PROCEEDING"|"COMPLETED"|"CONFIRMED"|"TERMINATED", "code": int,
"message": str}`` (``message``: the SIP message that moved the transaction, CRLF line ends, ""
after a timer);
``{"event": "recorded", "call": n, "path"}``; ``{"event": "error", "command", "info"}``;
``{"event": "started", "timer_use", "timer_sess_expires_sec", "timer_min_se_sec"}``; ``{"event": "stopped"}``.

Quirks: pjsua2's default VAD drops silent frames (``noVad``); its conference bridge runs at
16 kHz unless ``clockRate`` says 8000; a recorder's WAV header is only written when the recorder
is destroyed (so it is destroyed as soon as its call ends); pjlib prints to fd 1 before any log
setting applies, so the child keeps a copy of its stdout for events and points fd 1 at its log.
pjsua takes each call's RTP port from ``rtp_port`` upwards (then +2...), counting afresh in each
process: a phone restarted after ``kill()`` on the same ports puts its first call on the same
RTP port as the killed one's first call. ``dial`` sends the INVITE to the registrar's address
(pjsua2's ``targetUri``) whatever host the URI names, like a phone with an outbound proxy, but
with no Route header; REGISTER is untouched.

``tsx`` events come from ``onCallTsxState``, which pjsua only calls while the call exists: the
phone's own BYE (it is disconnected as it sends it) and its un-REGISTER are not there, an
incoming INVITE starts at PROCEEDING (TRYING passed before the call object), and a challenged
INVITE shows CALLING and, only once Timer D has run (32 s over UDP), TERMINATED with its 407.
``messages()`` reads every message from the log instead (LF line ends), those included.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Transport = str  # "udp" | "tcp"
TimerUse = str  # "inactive" | "optional" | "required" | "always" (RFC 4028 session timers)
TIMER_USES = ("inactive", "optional", "required", "always")  # PJSUA_SIP_TIMER_* 0..3


# pjsua's log (level 5) holds every SIP message it sends or receives, between these two lines.
_MESSAGE = re.compile(
    r"^\S+\s+pjsua_core\.c\s+\.*(?P<dir>TX|RX) \d+ bytes (?P<kind>Request|Response) msg (?P<what>\S+) \(\S+\) "
    r"(?:to|from) (?P<transport>\S+) (?P<peer>\S+):\r?\n(?P<text>.*?)\r?\n--end msg--$",
    re.MULTILINE | re.DOTALL,
)


class Events(list):  # type: ignore[type-arg]
    """Every event the child reported, in order; called, those of one kind whose fields match:
    ``events("tsx", method="UPDATE", direction="sent")``."""

    def __call__(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return [
            e for e in list(self)
            if (kind is None or e.get("event") == kind) and all(e.get(k) == v for k, v in match.items())
        ]


def available() -> bool:
    return importlib.util.find_spec("pjsua2") is not None


@dataclass
class Pjsua:
    """One pjsua2 child process; ``sip_port`` is the platform's, ``user``/``password`` an extension."""

    workdir: Path
    process: subprocess.Popen[bytes]
    transport: Transport
    config: dict[str, Any] = field(default_factory=dict)
    events: Events = field(default_factory=Events)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reader: threading.Thread | None = None
    _restarts: int = 0

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
        timer_use: TimerUse | None = None,
        timer_sess_expires_sec: int | None = None,
        timer_min_se_sec: int | None = None,
    ) -> Pjsua:
        """Start a phone. ``sip_port_local``/``rtp_port``: its own SIP port and the first of its
        RTP ports (free ones when None). ``timer_*``: the account's RFC 4028 session timer
        (pjsua2's ``timerUse``, ``timerSessExpiresSec``, ``timerMinSESec``); None keeps pjsua2's
        default (optional, 1800, 90). PJSIP aborts the whole process (a C assertion) when a call
        starts with Min-SE under 90 s or Session-Expires under Min-SE: refused here instead."""
        from tests.live import free_port

        if not available():
            raise RuntimeError("pjsua2 is not installed (pip install pjsua2-python, in the test extra)")
        assert transport in ("udp", "tcp")
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "workdir": str(workdir),
            "user": user,
            "password": password,
            "domain": domain,
            "sip_port": sip_port,
            "registrar": f"sip:127.0.0.1:{sip_port};transport={transport}",
            "transport": transport,
            "local_port": sip_port_local or free_port(),
            "rtp_port": rtp_port or free_port(),
            "microphone": str(microphone),
            "timer_use": timer_use,
            "timer_sess_expires_sec": timer_sess_expires_sec,
            "timer_min_se_sec": timer_min_se_sec,
        }
        return cls._spawn(workdir, config)

    @classmethod
    def _spawn(cls, workdir: Path, config: dict[str, Any]) -> Pjsua:
        if config["timer_use"] is not None and config["timer_use"] not in TIMER_USES:
            raise ValueError(f"timer_use is one of {TIMER_USES}, not {config['timer_use']!r}")
        min_se = 90 if config["timer_min_se_sec"] is None else config["timer_min_se_sec"]
        expires = 1800 if config["timer_sess_expires_sec"] is None else config["timer_sess_expires_sec"]
        if min_se < 90 or expires < min_se:
            raise ValueError(f"PJSIP needs 90 <= Min-SE <= Session-Expires, not {min_se} and {expires}")
        workdir.mkdir(parents=True, exist_ok=True)
        config = {**config, "workdir": str(workdir)}
        transport = config["transport"]
        (workdir / "config.json").write_text(json.dumps(config, indent=1))
        stderr = (workdir / "stderr.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, __file__, str(workdir / "config.json")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
        )
        stderr.close()
        phone = cls(workdir, process, transport, config)
        phone._reader = threading.Thread(target=phone._read, name="pjsua-events", daemon=True)
        phone._reader.start()
        return phone

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)

    def _of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("event") == kind]

    def command(self, name: str, **params: Any) -> None:
        if self.process.poll() is not None or self.process.stdin is None:
            return
        try:
            self.process.stdin.write(json.dumps({"command": name, **params}).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def hangup(self) -> None:
        """Hang up the current call from the phone (a BYE once it is answered)."""
        self.command("hangup")

    def dial(self, uri: str, target: str | None = None) -> None:
        """Place a call from the phone to ``uri`` (``sip:<number or extension>@<customer-id>.
        registrar.voipbin.test``, its To); the INVITE goes to ``target`` (its request URI), by
        default ``sip:<uri's user>@<the registrar's address>;transport=...``. It is the phone's
        next call number (incoming and outgoing count together); its ``call`` events say
        ``"direction": "outgoing"``; a failure to send is an ``error`` event."""
        self.command("dial", uri=uri, **({"target": target} if target else {}))

    @property
    def local_port(self) -> int:
        """The phone's own SIP port."""
        return int(self.config["local_port"])

    @property
    def rtp_port(self) -> int:
        """The first of the phone's RTP ports (its calls take this one, then +2, +4...)."""
        return int(self.config["rtp_port"])

    def local_rtp_port(self, call: int = 1) -> int | None:
        """The RTP port the ``call``-th call used on the phone (its SDP's), once its media is up."""
        media = self.events("media", call=call)
        return int(media[0]["local_rtp_port"]) if media else None

    def requests(self, method: str, direction: str = "sent", call: int | None = None) -> list[str]:
        """The text (CRLF line ends) of each ``method`` request the phone sent (or received) in
        its calls, as its ``tsx`` events carry them (so not its own BYE: see ``messages``)."""
        found = self.events("tsx", method=method, direction=direction)
        return [
            e["message"] for e in found
            if (call is None or e["call"] == call) and e["message"].startswith(method + " ")
        ]

    def messages(self, method: str | None = None, direction: str | None = None) -> list[dict[str, Any]]:
        """Every SIP message the phone sent or received so far, REGISTERs, challenges and its own
        BYE included, from its log: ``{"direction": "sent"|"received", "kind": "request"|"response",
        "method", "code" (0 for a request), "cseq", "transport": "UDP"|"TCP", "peer": "ip:port",
        "text"}`` (LF line ends), those of ``method`` (the CSeq's) and ``direction`` when given.
        Retransmissions are there once each time they went out."""
        found = []
        for match in _MESSAGE.finditer(self.log):
            what = match["what"].split("/")  # INVITE/cseq=3 or 200/INVITE/cseq=3
            code = int(what[0]) if match["kind"] == "Response" else 0
            name, cseq = what[-2], int(what[-1].split("=", 1)[1])
            entry = {
                "direction": "sent" if match["dir"] == "TX" else "received",
                "kind": match["kind"].lower(), "method": name, "code": code, "cseq": cseq,
                "transport": match["transport"], "peer": match["peer"], "text": match["text"],
            }
            if (method is None or name == method) and (direction is None or entry["direction"] == direction):
                found.append(entry)
        return found

    @property
    def registered(self) -> bool:
        states = self._of("registration")
        return bool(states) and states[-1]["code"] == 200 and states[-1]["expires"] > 0

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def connected(self) -> int:
        """Calls this phone answered or placed and saw confirmed (ACKed)."""
        return sum(e["state"] == "CONFIRMED" for e in self._of("call"))

    @property
    def ended(self) -> int:
        return sum(e["state"] == "DISCONNECTED" for e in self._of("call"))

    def ended_calls(self) -> list[dict[str, Any]]:
        """How each ended call ended, as the phone saw it (``code``, ``reason``)."""
        return [e for e in self._of("call") if e["state"] == "DISCONNECTED"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self._of("error")

    def heard(self, call: int = 1) -> np.ndarray | None:
        """What the phone recorded in its ``call``-th call (from 1), once that call ended and the
        recording is closed; None until then."""
        from tests.peers.baresip import read_wav

        done = [e for e in self._of("recorded") if e["call"] == call]
        if not done:
            return None
        try:
            data = read_wav(Path(done[0]["path"]))
        except (wave.Error, EOFError, AssertionError):
            return None
        return data if len(data) else None

    @property
    def log(self) -> str:
        path = self.workdir / "pjsua.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """The phone vanishes: SIGKILL at once, no BYE, no un-REGISTER. ``stop()`` afterwards
        does nothing more; ``restart()`` brings up a new process on the same ports."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session (start_new_session)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=5)
        self.stop()

    def restart(self, workdir: Path | None = None, **changes: Any) -> Pjsua:
        """A new phone process like this one, with the same SIP port, RTP ports, account and
        timers (``changes`` overrides config keys, e.g. ``timer_use``), in ``workdir`` (by default
        ``<workdir>-restart<N>`` next to this one's, so logs and recordings are not mixed).
        Kill or stop this one first: the ports must be free."""
        self._restarts += 1
        if workdir is None:
            workdir = self.workdir.with_name(f"{self.workdir.name}-restart{self._restarts}")
        return type(self)._spawn(workdir, {**self.config, **changes})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.command("quit")
            try:
                self.process.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._reader is not None:
            self._reader.join(timeout=5)


# -- the child process -------------------------------------------------------------------------


def _child(config_path: str) -> int:  # pragma: no cover - runs in its own process
    config = json.loads(Path(config_path).read_text())
    workdir = Path(config["workdir"])
    # Events go to a copy of the original stdout; whatever pjlib prints goes to the log.
    events = os.fdopen(os.dup(1), "w", buffering=1)
    log_fd = os.open(workdir / "pjsua-stdout.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)

    def emit(event: str, **data: Any) -> None:
        events.write(json.dumps({"event": event, **data}) + "\n")

    import pjsua2 as pj

    endpoint = pj.Endpoint()
    endpoint.libCreate()
    ep_config = pj.EpConfig()
    ep_config.uaConfig.threadCnt = 0
    ep_config.uaConfig.mainThreadOnly = True
    ep_config.uaConfig.userAgent = "pjsua2-test-peer"
    ep_config.logConfig.level = 5
    ep_config.logConfig.consoleLevel = 0
    ep_config.logConfig.filename = str(workdir / "pjsua.log")
    ep_config.medConfig.noVad = True  # keep sending RTP through silence
    ep_config.medConfig.clockRate = 8000
    ep_config.medConfig.sndClockRate = 8000
    ep_config.medConfig.ecTailLen = 0
    endpoint.libInit(ep_config)

    transport_config = pj.TransportConfig()
    transport_config.port = config["local_port"]
    transport_config.boundAddress = "127.0.0.1"
    transport_config.publicAddress = "127.0.0.1"
    kind = pj.PJSIP_TRANSPORT_TCP if config["transport"] == "tcp" else pj.PJSIP_TRANSPORT_UDP
    endpoint.transportCreate(kind, transport_config)
    endpoint.audDevManager().setNullDev()
    endpoint.libStart()

    # Every call object stays referenced until it ended: pjsua2 hangs up a call whose object is freed.
    state: dict[str, Any] = {"calls": 0, "live": {}, "media": {}, "finished": [], "running": True}

    tsx_states = {
        pj.PJSIP_TSX_STATE_NULL: "NULL", pj.PJSIP_TSX_STATE_CALLING: "CALLING",
        pj.PJSIP_TSX_STATE_TRYING: "TRYING", pj.PJSIP_TSX_STATE_PROCEEDING: "PROCEEDING",
        pj.PJSIP_TSX_STATE_COMPLETED: "COMPLETED", pj.PJSIP_TSX_STATE_CONFIRMED: "CONFIRMED",
        pj.PJSIP_TSX_STATE_TERMINATED: "TERMINATED", pj.PJSIP_TSX_STATE_DESTROYED: "DESTROYED",
    }

    class Call(pj.Call):  # type: ignore[misc]
        def __init__(self, account: pj.Account, call_id: int, number: int, direction: str) -> None:
            super().__init__(account, call_id)
            self.number = number
            self.direction = direction

        def onCallState(self, prm: pj.OnCallStateParam) -> None:
            info = self.getInfo()
            name = info.stateText.upper() if info.state != pj.PJSIP_INV_STATE_DISCONNECTED else "DISCONNECTED"
            emit("call", call=self.number, direction=self.direction, state=name, code=info.lastStatusCode,
                 reason=info.lastReason)
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                state["finished"].append(self)  # released from the main loop, not in this callback

        def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
            # Every transaction of the call's dialog (INVITE, re-INVITE, UPDATE, BYE, ACK-less...):
            # one event per state change, with the message that moved it when there is one.
            try:
                event = prm.e
                if event.type != pj.PJSIP_EVENT_TSX_STATE:
                    return
                body = event.body.tsxState
                tsx = body.tsx
                message = ""
                if body.type == pj.PJSIP_EVENT_RX_MSG:
                    message = body.src.rdata.wholeMsg
                elif body.type == pj.PJSIP_EVENT_TX_MSG:
                    message = body.src.tdata.wholeMsg
                emit("tsx", call=self.number, method=tsx.method,
                     direction="sent" if tsx.role == pj.PJSIP_ROLE_UAC else "received",
                     state=tsx_states.get(tsx.state, str(tsx.state)), code=tsx.statusCode, message=message)
            except Exception as error:  # noqa: BLE001 - never let a callback raise into pjsua
                emit("error", command="onCallTsxState", info=repr(error))

        def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
            info = self.getInfo()
            for index, media in enumerate(info.media):
                if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                    continue
                if self.number in state["media"]:
                    continue
                audio = self.getAudioMedia(index)
                player = pj.AudioMediaPlayer()
                player.createPlayer(config["microphone"], pj.PJMEDIA_FILE_NO_LOOP)
                path = str(workdir / f"heard-{self.number}.wav")
                recorder = pj.AudioMediaRecorder()
                recorder.createRecorder(path)
                player.startTransmit(audio)
                audio.startTransmit(recorder)
                state["media"][self.number] = (player, recorder, path)
                local, remote = "", ""
                try:
                    local = self.getMedTransportInfo(index).localRtpName
                    remote = self.getStreamInfo(index).remoteRtpAddress
                except pj.Error:
                    pass
                port = int(local.rsplit(":", 1)[1]) if ":" in local else 0
                emit("media", call=self.number, local_rtp=local, local_rtp_port=port, remote_rtp=remote)

    class Account(pj.Account):  # type: ignore[misc]
        def onRegState(self, prm: pj.OnRegStateParam) -> None:
            emit("registration", code=prm.code, reason=prm.reason, expires=prm.expiration)

        def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
            state["calls"] += 1
            call = Call(self, prm.callId, state["calls"], "incoming")
            state["live"][call.number] = call
            emit("call", call=call.number, direction="incoming", state="INCOMING", code=0, reason="")
            answer = pj.CallOpParam()
            answer.statusCode = 200
            call.answer(answer)

    account_config = pj.AccountConfig()
    account_config.idUri = f"sip:{config['user']}@{config['domain']}"
    account_config.regConfig.registrarUri = config["registrar"]
    account_config.regConfig.timeoutSec = 300
    account_config.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", config["user"], 0, config["password"]))
    account_config.mediaConfig.transportConfig.port = config["rtp_port"]
    account_config.mediaConfig.transportConfig.portRange = 40
    account_config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    # No sipConfig.transportId: like a phone with only TCP enabled, the account is not bound to its
    # transport, so in-dialog requests go where the dialog's remote target (our Contact) says.
    account_config.natConfig.sdpNatRewriteUse = 0
    account_config.natConfig.contactRewriteUse = 0
    account_config.natConfig.viaRewriteUse = 0
    timers = account_config.callConfig
    if config.get("timer_use") is not None:
        timers.timerUse = TIMER_USES.index(config["timer_use"])
    if config.get("timer_sess_expires_sec") is not None:
        timers.timerSessExpiresSec = config["timer_sess_expires_sec"]
    if config.get("timer_min_se_sec") is not None:
        timers.timerMinSESec = config["timer_min_se_sec"]
    emit("started", timer_use=TIMER_USES[timers.timerUse], timer_sess_expires_sec=timers.timerSessExpiresSec,
         timer_min_se_sec=timers.timerMinSESec)
    account = Account()
    account.create(account_config)
    # Outgoing calls go to the registrar's address (the request URI), whatever host the To names.
    target_host = f"127.0.0.1:{config['sip_port']};transport={config['transport']}"

    def release(call: Any) -> None:
        media = state["media"].pop(call.number, None)
        if media is not None:
            player, recorder, path = media
            del player, recorder  # destroying the recorder writes the WAV header
            emit("recorded", call=call.number, path=path)
        state["live"].pop(call.number, None)

    def run(command: dict[str, Any]) -> None:
        name = command.get("command")
        if name == "hangup":
            call = state["live"][max(state["live"])] if state["live"] else None
            if call is None:
                emit("error", command=name, info="no call")
                return
            try:
                call.hangup(pj.CallOpParam())
            except pj.Error as error:
                emit("error", command=name, info=error.info())
        elif name == "dial":
            state["calls"] += 1
            call = Call(account, pj.PJSUA_INVALID_ID, state["calls"], "outgoing")
            state["live"][call.number] = call
            uri = command["uri"]
            user = uri.split(":", 1)[1].split("@", 1)[0] if "@" in uri else ""
            prm = pj.CallOpParam(True)
            prm.txOption.targetUri = command.get("target") or f"sip:{user}@{target_host}"
            try:
                call.makeCall(uri, prm)
            except pj.Error as error:
                state["live"].pop(call.number, None)
                emit("error", command=name, info=error.info())
        elif name == "quit":
            state["running"] = False

    buffer = b""
    stdin = sys.stdin.fileno()
    while state["running"]:
        endpoint.libHandleEvents(20)
        while state["finished"]:
            release(state["finished"].pop(0))
        readable, _, _ = select.select([stdin], [], [], 0)
        if readable:
            chunk = os.read(stdin, 4096)
            if not chunk:
                break  # the parent is gone
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    run(json.loads(line))

    for call in list(state["live"].values()):
        try:
            call.hangup(pj.CallOpParam())
        except pj.Error:
            pass
    for _ in range(25 if state["live"] else 0):
        endpoint.libHandleEvents(20)
    for call in list(state["finished"]) + list(state["live"].values()):
        release(call)
    state["media"].clear()
    try:
        account.shutdown()
    except pj.Error:
        pass
    endpoint.libDestroy()
    emit("stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_child(sys.argv[1]))
