"""Settings of one platform instance, from CLI flags and ``VOIPBIN_*`` environment variables."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "VOIPBIN_"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    # Loopback only by default: reaching beyond it needs a chosen admin password (see accounts.bootstrap).
    host: str = "127.0.0.1"
    api_port: int = 8443
    http_port: int = 8080
    sip_port: int = 5060
    rtp_port_first: int = 20000
    rtp_port_last: int = 30000
    sip_auth_failure_limit: int = 10
    sip_digest: str = "MD5"
    sip_nonce_lifetime_s: float = 300.0
    # Calls whose far end vanished end: no RTP/RTCP for this long (0: never); RFC 4028 session
    # timers (the interval we ask for, and the least we accept); an OPTIONS every so often on each
    # phone's TCP connection (0: never), which is closed when it goes unanswered.
    media_timeout_s: float = 30.0
    session_expires_s: int = 1800
    session_min_se_s: int = 90
    tcp_keepalive_s: float = 30.0
    # New calls (INVITE) and REGISTERs allowed per source address a second; floods beyond are dropped.
    sip_invite_rate: float = 10.0
    sip_register_rate: float = 200.0
    public_address: str = ""
    domain: str = "voipbin.test"
    database_url: str = ""
    # Scale-out: events, registrations and rate limits shared through Redis; several installs
    # (or test runs) can share one Redis under different namespaces.
    redis_url: str = ""
    redis_namespace: str = "voipbin"
    # "all" (one node does everything), "api" (HTTP API, WebSocket, console; calls run on media
    # nodes) or "media" (SIP, RTP and flows; also serves the API).
    role: str = "all"
    # Where other nodes reach this node's HTTP API (requests about its calls are forwarded there);
    # derived from --public-address and --http-port when empty.
    internal_url: str = ""
    smtp_url: str = ""
    mail_from: str = "VoIPBIN <no-reply@voipbin.test>"
    # Base URL people click in emails; derived from the HTTPS port when empty.
    public_url: str = ""
    jwt_lifetime_s: int = 7 * 24 * 3600
    accesskey_default_expire_s: int = 365 * 24 * 3600
    signup_code_lifetime_s: int = 15 * 60
    signup_max_attempts: int = 5
    # Signups a client address may start an hour, and signup mails one address gets an hour.
    signup_limit_per_source: int = 20
    signup_mails_per_address: int = 3
    # Failed logins allowed per username, and per client address, in each window.
    login_failure_limit: int = 10
    login_failure_limit_per_address: int = 100
    login_failure_window_s: int = 300
    max_body_bytes: int = 1 << 20
    # A client must send a request's headers within this time, or its connection is closed.
    http_header_timeout_s: float = 10.0
    # Address ranges customer-given URLs and SIP destinations may reach besides public addresses,
    # e.g. "10.0.0.0/8,127.0.0.0/8" (core.egress).
    egress_allow: str = ""
    webhook_timeout_s: float = 5.0
    webhook_retry_base_s: float = 2.0
    webhook_retry_max_s: float = 300.0
    webhook_max_age_s: float = 24 * 3600.0
    # Bounds no call, customer or flow may pass: a call is hung up (timeout) this long after its
    # answer; a customer holds at most so many live calls; calls that caused one another (a flow's
    # connect, a call of ours that reaches us again) form a chain of at most so many.
    max_call_duration_s: float = 4 * 3600.0
    max_live_calls_per_customer: int = 100
    max_calls_per_chain: int = 10
    # "whisper" (falls back to pocketsphinx if it cannot load) or "pocketsphinx".
    stt_engine: str = "whisper"
    # Recogniser worker processes; 0: one per core the platform may use.
    stt_workers: int = 0
    sandbox: bool = True
    # The operator's password at first start (and in place of the published default later).
    admin_password: str = field(default="", repr=False)
    # Listen beyond loopback even while admin@localhost has its published password.
    insecure_sandbox: bool = False
    log_level: str = "info"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'voipbin.db'}"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def advertised_address(self) -> str:
        if self.public_address:
            return self.public_address
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def exposed(self) -> bool:
        """Whether phones and browsers on other machines can reach this install."""
        if self.public_address:
            return True
        try:
            return not (self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback)
        except ValueError:
            return True

    @property
    def node_url(self) -> str:
        return self.internal_url or f"http://{self.advertised_address}:{self.http_port}"

    @property
    def takes_calls(self) -> bool:
        return self.role in ("all", "media")

    @property
    def base_url(self) -> str:
        return self.public_url or f"https://{self.advertised_address}:{self.api_port}"

    def registrar_domain(self, customer_id: str) -> str:
        return f"{customer_id}.registrar.{self.domain}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, Path):
        return Path(raw)
    return raw


def from_env(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then ``VOIPBIN_<FIELD>`` variables, then explicit overrides (CLI flags)."""
    environ = dict(os.environ if environ is None else environ)
    defaults = Settings()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if f.name == "extra":
            continue
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None and raw != "":
            values[f.name] = _coerce(raw, getattr(defaults, f.name))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
