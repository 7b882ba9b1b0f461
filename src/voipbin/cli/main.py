"""The ``voipbin`` command: start, init, doctor, mail."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from voipbin import __version__
from voipbin.accounts.bootstrap import DefaultCredentials, DemoExtension, SandboxFacts, sandbox_facts
from voipbin.accounts.defaults import ADMIN_PASSWORD, ADMIN_USERNAME
from voipbin.cli.doctor import run_checks
from voipbin.config import Settings, from_env
from voipbin.core.tls import ensure_certificate
from voipbin.mail.outbox import read_outbox
from voipbin.runtime import Platform
from voipbin.server import endpoints, serve, tls_names

app = typer.Typer(help="A self-hosted VoIPBIN-compatible voice platform.", no_args_is_help=True, add_completion=False)
console = Console()
err_console = Console(stderr=True)
# How the README and every hint name this command: the launcher at the root of a clone.
CLI = "./voipbin"

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where the database, keys and mail live. [env VOIPBIN_DATA_DIR; default ./data]")]
Host = Annotated[str | None, typer.Option("--host", help="Address to listen on; beyond loopback needs a chosen admin password. [env VOIPBIN_HOST; default 127.0.0.1]")]
EgressAllow = Annotated[str | None, typer.Option("--egress-allow", help="Address ranges customers' webhooks, play URLs and SIP destinations may reach besides public addresses, e.g. 10.0.0.0/8. [env VOIPBIN_EGRESS_ALLOW]")]
InsecureSandbox = Annotated[bool, typer.Option("--insecure-sandbox", help="Listen beyond loopback even with the published admin password. [env VOIPBIN_INSECURE_SANDBOX]")]
ApiPort = Annotated[int | None, typer.Option("--api-port", help="HTTPS API port. [env VOIPBIN_API_PORT; default 8443]")]
HttpPort = Annotated[int | None, typer.Option("--http-port", help="Plain HTTP port for local tools. [env VOIPBIN_HTTP_PORT; default 8080]")]
SipPort = Annotated[int | None, typer.Option("--sip-port", help="SIP UDP/TCP port. [env VOIPBIN_SIP_PORT; default 5060]")]
PublicAddress = Annotated[str | None, typer.Option("--public-address", help="Address phones and carriers reach us at (behind NAT). [env VOIPBIN_PUBLIC_ADDRESS]")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL; default SQLite in the data dir. [env VOIPBIN_DATABASE_URL]")]
RedisUrl = Annotated[str | None, typer.Option("--redis-url", help="redis://host:6379/0 to share events, registrations and limits between nodes. [env VOIPBIN_REDIS_URL]")]
Role = Annotated[str | None, typer.Option("--role", help="all (default), api (API only; calls run on media nodes) or media. [env VOIPBIN_ROLE]")]
SmtpUrl = Annotated[str | None, typer.Option("--smtp-url", help="smtp://user:pass@host:port; default keeps mail as .eml files. [env VOIPBIN_SMTP_URL]")]


def _settings(**flags: Any) -> Settings:
    return from_env(**flags)


def _init(settings: Settings) -> None:
    async def run() -> None:
        platform = Platform(settings)
        await platform.start()
        await platform.stop()

    asyncio.run(run())
    ensure_certificate(settings.data_dir / "tls", tls_names(settings))


@app.command()
def init(data_dir: DataDir = None, database_url: DatabaseUrl = None, public_address: PublicAddress = None) -> None:
    """Create the data dir, database, TLS certificate and the admin@localhost account."""
    settings = _settings(data_dir=data_dir, database_url=database_url, public_address=public_address)
    _init(settings)
    console.print(f"[green]Initialized[/] {settings.data_dir.resolve()} (admin: {ADMIN_USERNAME} / {ADMIN_PASSWORD})")


@app.command()
def start(
    data_dir: DataDir = None,
    host: Host = None,
    api_port: ApiPort = None,
    http_port: HttpPort = None,
    sip_port: SipPort = None,
    public_address: PublicAddress = None,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    role: Role = None,
    smtp_url: SmtpUrl = None,
    egress_allow: EgressAllow = None,
    insecure_sandbox: InsecureSandbox = False,
) -> None:
    """Run the whole platform in the foreground (Ctrl-C stops it)."""
    settings = _settings(
        egress_allow=egress_allow,
        insecure_sandbox=insecure_sandbox or None,
        data_dir=data_dir,
        host=host,
        api_port=api_port,
        http_port=http_port,
        sip_port=sip_port,
        public_address=public_address,
        database_url=database_url,
        redis_url=redis_url,
        role=role,
        smtp_url=smtp_url,
    )
    # Log lines and the spinner share one console, so each line prints above the spinner, not through it.
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[_ConsoleHandler(err_console)])

    status = err_console.status("Starting VoIPBIN: database, API, SIP and media…")
    status.start()

    async def announce(platform: Platform) -> None:
        status.stop()
        _banner(settings, await sandbox_facts(platform.accounts))

    try:
        asyncio.run(serve(settings, announce))
    except KeyboardInterrupt:
        pass
    except DefaultCredentials as refusal:
        status.stop()
        console.print(f"[bold red]Not starting:[/] {refusal}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    finally:
        status.stop()
    console.print("[yellow]stopped[/]")


class _ConsoleHandler(logging.Handler):
    """Writes log records through a rich console (whole lines, never wrapped)."""

    def __init__(self, target: Console) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001  # logging must never raise into the code that logs
            self.handleError(record)


def _print_long(text: str) -> None:
    """Text holding values people copy (links, ids, commands): never wrapped or cut, at any width."""
    console.print(text, soft_wrap=True, highlight=False)


def _banner(settings: Settings, facts: SandboxFacts) -> None:
    where = endpoints(settings)
    rows = [
        ("Console", f"{where.api}/console/"),
        ("API (HTTPS)", where.api),
        ("API docs", where.docs),
        ("API (HTTP, local tools)", where.http),
        ("Events WebSocket", where.websocket),
        ("SIP registrar", where.sip),
        ("SIP domain", f"<customer-id>.registrar.{settings.domain}"),
        ("Admin login", f"{ADMIN_USERNAME} / {ADMIN_PASSWORD}" if facts.default_password else f"{ADMIN_USERNAME} / (your password)"),
    ]
    if settings.sandbox:
        rows += [(f"Demo extension {demo.extension}", f"password {demo.password}") for demo in facts.demo_extensions]
        rows += [
            ("  their SIP domain", settings.registrar_domain(facts.customer_id)),
            ("Demo number", facts.demo_number or "none"),
            ("Mailbox", f"{where.api}/console/#/mailbox"),
            ("  or", f"{CLI} mail --data-dir {settings.data_dir}"),
        ]
    rows.append(("Data", str(settings.data_dir.resolve())))
    # Plain "label  value" lines, not a table or a panel: at any width each value stays whole on its line.
    width = max(len(label) for label, _ in rows) + 2
    console.print(f"[bold green]VoIPBIN {__version__} is running[/] (Ctrl-C to stop)", highlight=False)
    for label, value in rows:
        console.print(f"[dim]{label.ljust(width)}[/]", end="", highlight=False)
        _print_long(value)
    if facts.default_password:
        console.print(
            f"[bold red]{ADMIN_USERNAME} has its published password.[/] Anyone who reaches this install can log in as "
            "the operator, so it listens on loopback only and calls no phone numbers until you change it "
            f"(restart with VOIPBIN_ADMIN_PASSWORD=<a strong password>). `{CLI} doctor` explains.",
            soft_wrap=True, highlight=False,
        )
    first = facts.demo_extensions[0] if facts.demo_extensions else DemoExtension("1000", "")
    _print_long(f"Register a softphone as {first.extension} / {first.password}, then place your first call:\n"
                f"{_first_call(where.api, facts.demo_number, facts.default_password)}")
    if not settings.public_address:
        console.print(
            "[dim]Phones on other machines need an address they can reach: "
            f"restart with --public-address <this host's IP>. `{CLI} doctor` checks the setup.[/]",
            soft_wrap=True, highlight=False,
        )


def _first_call(api: str, number: str, default_password: bool) -> str:
    login = json.dumps({"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD if default_password else "<your password>"})
    call = json.dumps({
        "source": {"type": "tel", "target": number or "+15550000000"},
        "destinations": [{"type": "extension", "target_name": "1000"}],
        "actions": [{"type": "talk", "option": {"text": "Hello! This call comes from your own VoIPBIN.", "language": "en-US"}}],
    })
    return (
        f"  TOKEN=$(curl -sk {api}/auth/login -H 'Content-Type: application/json' -d '{login}' "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"token\"])')\n"
        f"  curl -sk -X POST \"{api}/v1.0/calls?token=$TOKEN\" -H 'Content-Type: application/json' -d '{call}'"
    )


@app.command()
def doctor(
    data_dir: DataDir = None,
    host: Host = None,
    api_port: ApiPort = None,
    http_port: HttpPort = None,
    sip_port: SipPort = None,
    public_address: PublicAddress = None,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    smtp_url: SmtpUrl = None,
    egress_allow: EgressAllow = None,
    speech: Annotated[bool, typer.Option("--speech/--no-speech", help="Also speak and recognise a sentence, and run the local LLM.")] = True,
) -> None:
    """Check ports, certificate, database, addresses, mail, exposure, speech engines and the local LLM; print a fix for each problem."""
    settings = _settings(data_dir=data_dir, host=host, api_port=api_port, http_port=http_port, sip_port=sip_port,
                         public_address=public_address, database_url=database_url, redis_url=redis_url,
                         smtp_url=smtp_url, egress_allow=egress_allow)
    with console.status("Checking…"):
        findings = asyncio.run(run_checks(settings, speech=speech))
    marks = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
    # One finding a line (its fix on the next), not a table: fixes hold commands and paths to copy.
    for finding in findings:
        console.print(f"{marks[finding.level]} [bold]{escape(finding.check)}[/]: {escape(finding.detail)}",
                      soft_wrap=True, highlight=False)
        if finding.fix:
            console.print(f"    fix: {escape(finding.fix)}", soft_wrap=True, highlight=False)
    failures = sum(f.level == "fail" for f in findings)
    warnings = sum(f.level == "warn" for f in findings)
    console.print(f"{failures} problem(s), {warnings} warning(s)" if failures or warnings else "[green]All good.[/]")
    raise typer.Exit(1 if failures else 0)


@app.command()
def mail(
    message_id: Annotated[str | None, typer.Argument(help="Show this message in full.")] = None,
    data_dir: DataDir = None,
) -> None:
    """List the mail the platform sent (kept in the data dir when no SMTP server is set)."""
    settings = _settings(data_dir=data_dir)
    mails = read_outbox(settings.mail_dir)
    if message_id:
        found = next((m for m in mails if m.id == message_id or m.id.startswith(message_id)), None)
        if found is None:
            raise typer.BadParameter(f"no message {message_id} in {settings.mail_dir}")
        _print_long(f"From: {found.sender}\nTo: {found.to}\nSubject: {found.subject}\n\n{found.body}")
        return
    if not mails:
        _print_long(f"No mail in {settings.mail_dir}")
        return
    # No table: an id is longer than a table's share of 80 columns, and it is copied, so each mail
    # gets its id on a line of its own and its date, address and subject on the next.
    for m in mails:
        _print_long(m.id)
        _print_long(f"  {m.date.isoformat(timespec='seconds') if m.date else '-'}  {m.to}  {m.subject}")
    console.print(f"[dim]`{CLI} mail <id>` shows one message (the start of its id will do).[/]", soft_wrap=True, highlight=False)

if __name__ == "__main__":
    app()
