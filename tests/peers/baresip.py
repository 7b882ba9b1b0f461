"""baresip as a scripted softphone: registers, auto-answers, plays a WAV, records what it hears."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.live import free_port, free_ports

RATE = 8000


def tone(path: Path, frequency: float, seconds: float, amplitude: float = 0.3) -> Path:
    """An 8 kHz mono 16-bit WAV of a sine tone."""
    t = np.arange(int(seconds * RATE)) / RATE
    samples = (np.sin(2 * np.pi * frequency * t) * amplitude * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())
    return path


def dominant_frequency(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as source:
        assert source.getframerate() == RATE and source.getsampwidth() == 2
        data = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
        if source.getnchannels() > 1:
            data = data[:: source.getnchannels()]
    return data.astype(np.float64)


@dataclass
class Baresip:
    """One baresip process; ``sip_port`` is the platform's, ``user``/``password`` an extension."""

    workdir: Path
    process: subprocess.Popen[bytes]
    control_port: int

    @classmethod
    def start(cls, workdir: Path, *, user: str, password: str, domain: str, sip_port: int, microphone: Path) -> Baresip:
        if shutil.which("baresip") is None:
            raise RuntimeError("baresip is not installed (Debian package baresip-core)")
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "dump").mkdir(exist_ok=True)
        control_port, local_port = free_port(), free_ports(2)  # baresip adds TLS at the next port
        rtp = free_port()
        (workdir / "config").write_text(
            "\n".join(
                [
                    "poll_method epoll",
                    "net_interface 127.0.0.1",
                    f"sip_listen 127.0.0.1:{local_port}",
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
            f'outbound="sip:127.0.0.1:{sip_port};transport=udp"\n'
        )
        log = (workdir / "baresip.log").open("wb")
        process = subprocess.Popen(
            ["baresip", "-f", str(workdir)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        return cls(workdir, process, control_port)

    def command(self, name: str, params: str = "") -> None:
        payload = json.dumps({"command": name, "params": params, "token": name}).encode()
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=5) as control:
            control.sendall(str(len(payload)).encode() + b":" + payload + b",")
            time.sleep(0.2)

    def heard(self) -> np.ndarray | None:
        """What baresip decoded from us (sndfile's ``*-dec.wav``), once the call ended and the
        file is complete; None until then."""
        dumps = sorted((self.workdir / "dump").glob("*dec.wav"))
        if not dumps:
            return None
        try:
            return read_wav(dumps[-1])
        except (wave.Error, EOFError, AssertionError):
            return None  # still being written

    @property
    def log(self) -> str:
        path = self.workdir / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                # baresip waits to un-REGISTER; a registrar already gone makes it hang.
                self.process.kill()
                self.process.wait()
