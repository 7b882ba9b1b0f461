"""REGISTER throughput with digest auth: the platform's registrar against Kamailio, same sipp load.

sipp (Debian sip-tester) plays bench/sip/register.xml: REGISTER -> 401 -> REGISTER with
[authentication] -> 200, one new Call-ID per registration, over UDP on loopback. Each target is
driven closed-loop: ``-l`` registrations in flight at most, a call rate far above what either
server sustains, so sipp starts a registration whenever one finishes. A short calibration run
sizes each measured run (``-m``) to last about ``--seconds``; ``-l`` is swept per target and the
fastest run without a failed registration is the target's figure.

Targets, measured in the same run so the ratio has its anchor:

* the platform: ``voipbin start`` (tests/e2e/server.py) with one extension created through
  ``POST /v1.0/extensions``; phones register ``<extension>@<customer_id>.registrar.<domain>``;
* Kamailio (Debian ``kamailio``, installed with apt when missing and running as root) with
  bench/sip/kamailio.cfg: ``pv_auth_check`` against a password in an AVP, qop=auth with nonce-count
  replay protection, ``registrar``/``usrloc`` in memory, no database. Run with one worker process
  (like the platform's one event loop) and with ``--kamailio-children`` workers.

Results: successful registrations/s (each is two REGISTER transactions), failures, sipp response
times (per registration and for the authenticated REGISTER), CPU used by the server and by sipp.
Everything shares this machine's cores with sipp, so figures are floors.

    .venv/bin/python bench/sip.py [--seconds 10] [--voipbin-concurrency 10,50]
                                  [--kamailio-concurrency 50,100,200] [--kamailio-children 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import commit_id  # noqa: E402
from tests.e2e.server import start_server  # noqa: E402  (after the path is set)

HERE = Path(__file__).resolve().parent / "sip"
SCENARIO = HERE / "register.xml"
KAMAILIO_CFG = HERE / "kamailio.cfg"
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
ADMIN = {"username": "admin@localhost", "password": "admin@localhost"}
USER = "bench"
PASSWORD = "bench-pass-1234"
KAMAILIO_DOMAIN = "kamailio.bench.test"
CALIBRATION_CALLS = 1000
# Before each measured run, wait up to QUIET_MAX_WAIT_S for the shared machine to be this idle.
QUIET_PCT = 25.0
QUIET_MAX_WAIT_S = 20.0
QUIET_BUDGET_S = 60.0  # waiting in all, so a machine that never quietens still gets a result in minutes


@dataclass
class Target:
    name: str
    port: int
    domain: str
    pids: list[int]  # the server's processes, for CPU accounting


# ------------------------------------------------------------------------------------- helpers


def free_udp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (the platform binds both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (and their waited-for children), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After "(comm)": state is field 3, utime 14, stime 15, cutime 16, cstime 17 (1-based).
        total += sum(int(x) for x in fields[11:15]) / tick
    return total


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has used (user+nice+system+irq+softirq+steal), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


_quiet_budget = [QUIET_BUDGET_S]


def wait_quiet(limit_pct: float = QUIET_PCT, max_wait: float = QUIET_MAX_WAIT_S) -> float:
    """Wait (bounded) for a second in which the whole machine used under ``limit_pct`` of one core.

    The machine is shared; a run that starts while something else compiles or tests measures that.
    Returns the busy share of the last second, in % of one core.
    """
    began = time.monotonic()
    deadline = began + min(max_wait, _quiet_budget[0])
    while True:
        before = busy_cpu_s()
        time.sleep(1.0)
        busy = 100 * (busy_cpu_s() - before)
        if busy < limit_pct or time.monotonic() >= deadline:
            _quiet_budget[0] = max(0.0, _quiet_budget[0] - (time.monotonic() - began))
            return round(busy, 1)


def process_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def _pct(ordered: list[float], q: float) -> float:
    return ordered[max(0, -(-len(ordered) * q // 100) - 1)] if ordered else 0.0


# ------------------------------------------------------------------------------------- targets


@contextmanager
def platform_target(tmp: Path) -> Iterator[Target]:
    port = free_udp_port()
    # One load generator stands for thousands of phones: lift the per-source REGISTER limit.
    server = start_server(tmp / "voipbin-data", "--sip-port", str(port), env={"VOIPBIN_SIP_REGISTER_RATE": "1000000"})
    try:
        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            login = client.post("/auth/login", json=ADMIN)
            login.raise_for_status()
            token = login.json()["token"]
            body = {"name": "bench", "detail": "bench/sip.py", "extension": USER, "password": PASSWORD}
            created = client.post("/v1.0/extensions", params={"token": token}, json=body)
            created.raise_for_status()
            customer_id = created.json()["customer_id"]
        # Settings default domain (voipbin.test): phones register <ext>@<customer>.registrar.<domain>.
        yield Target("voipbin", port, f"{customer_id}.registrar.voipbin.test", [server.process.pid])
    finally:
        server.stop()


def ensure_kamailio() -> str:
    """The kamailio binary; installs the Debian package when missing and we are root."""
    found = shutil.which("kamailio") or (Path("/usr/sbin/kamailio").exists() and "/usr/sbin/kamailio")
    if found:
        return str(found)
    if os.geteuid() != 0:
        raise SystemExit("kamailio is not installed: run `apt-get install kamailio` as root (Debian 12: 5.6.x)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "kamailio"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    # The package enables a system service; we only want the binary (no systemd here anyway).
    found = shutil.which("kamailio") or "/usr/sbin/kamailio"
    return str(found)


def kamailio_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("version:").strip()


@contextmanager
def kamailio_target(tmp: Path, binary: str, children: int) -> Iterator[Target]:
    port = free_udp_port()
    rundir = tmp / f"kamailio-{children}"
    rundir.mkdir()
    config = KAMAILIO_CFG.read_text()
    for key, value in {
        "PORT": str(port),
        "CHILDREN": str(children),
        "MODULES": KAMAILIO_MODULES,
        "PASSWORD": PASSWORD,
        "SECRET": secrets.token_hex(16),
    }.items():
        config = config.replace(f"@{key}@", value)
    cfg = rundir / "kamailio.cfg"
    cfg.write_text(config)
    log = (rundir / "kamailio.log").open("wb")
    # -DD: stay in the foreground (children still forked); -E: log to stderr. Own session, so the
    # whole process group can be ended by its id.
    process = subprocess.Popen(
        [binary, "-f", str(cfg), "-DD", "-E", "-m", "128", "-M", "16", "-Y", str(rundir)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        target = Target(f"kamailio-{children}", port, KAMAILIO_DOMAIN, [])
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"kamailio exited: {(rundir / 'kamailio.log').read_text()[-2000:]}")
            if run_sipp(target, tmp, calls=1, concurrency=1)["successful"] == 1:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not answer: {(rundir / 'kamailio.log').read_text()[-2000:]}")
            time.sleep(0.2)
        target.pids = process_group(process.pid)
        yield target
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Children that outlived the main process (they should not) are in the same group.
        for pid in process_group(process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


# ---------------------------------------------------------------------------------------- sipp


def run_sipp(target: Target, tmp: Path, calls: int, concurrency: int, rate: int = 100_000) -> dict[str, Any]:
    """One sipp run to completion; successful/failed registrations, rates and response times."""
    workdir = Path(tempfile.mkdtemp(prefix="sipp-", dir=tmp))
    stat_file = workdir / "stat.csv"
    command = [
        "sipp", f"127.0.0.1:{target.port}", "-sf", str(SCENARIO),
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-t", "u1",
        "-key", "domain", target.domain, "-s", USER, "-au", USER, "-ap", PASSWORD,
        # The digest uri must be the Request-URI (sipp would otherwise put the remote address there).
        "-auth_uri", f"sip:{target.domain}",
        "-m", str(calls), "-l", str(concurrency), "-r", str(rate), "-rp", "1000",
        "-nostdin", "-timeout", "300s",
        # sipp's default 64 KB socket buffer overflows on loopback once ~100 registrations are in
        # flight; drops turn into retransmissions, which a nonce-count check then rejects as replays.
        "-buff_size", str(4 << 20),
        "-trace_stat", "-stf", str(stat_file), "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", str(workdir / "errors.log"),
    ]
    cpu_before = cpu_seconds(target.pids)
    children_before = os.times().children_user + os.times().children_system
    busy_before = busy_cpu_s()
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = process.communicate(timeout=330)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    finally:
        if process.poll() is None:  # interrupted (Ctrl-C): never leave sipp behind
            process.kill()
            process.wait()
    wall = time.perf_counter() - began
    server_cpu = cpu_seconds(target.pids) - cpu_before
    sipp_cpu = os.times().children_user + os.times().children_system - children_before
    others = max(0.0, busy_cpu_s() - busy_before - server_cpu - sipp_cpu)

    final = _last_stat_row(stat_file)
    successful = int(final.get("SuccessfulCall(C)", 0))
    failed = int(final.get("FailedCall(C)", 0))
    elapsed = _epoch(final.get("CurrentTime", "")) - _epoch(final.get("StartTime", ""))
    if elapsed <= 0:
        elapsed = wall
    rtt: dict[str, list[float]] = {"1": [], "2": []}
    for path in workdir.glob("*_rtt.csv"):
        with path.open() as f:
            for row in csv.reader(f, delimiter=";"):
                if len(row) >= 3 and row[2].strip() in rtt:
                    try:
                        rtt[row[2].strip()].append(float(row[1]))
                    except ValueError:
                        continue
    result: dict[str, Any] = {
        "registrations": successful + failed,
        "successful": successful,
        "failed": failed,
        "retransmissions": int(final.get("Retransmissions(C)", 0)),
        "dead_calls": int(final.get("DeadCallMsgs(C)", 0)),
        "failed_unexpected_message": int(final.get("FailedUnexpectedMessage(C)", 0)),
        "failed_max_udp_retrans": int(final.get("FailedMaxUDPRetrans(C)", 0)),
        "elapsed_s": round(elapsed, 3),
        "registrations_per_s": round(successful / elapsed, 1) if elapsed else 0.0,
        "register_requests_per_s": round(2 * successful / elapsed, 1) if elapsed else 0.0,
        "server_cpu_pct_of_one_core": round(100 * server_cpu / wall, 1) if target.pids else None,
        "sipp_cpu_pct_of_one_core": round(100 * sipp_cpu / wall, 1),
        # Everything else that ran on the (shared) machine meanwhile, kernel work included.
        "other_cpu_pct_of_one_core": round(100 * others / wall, 1),
        "sipp_rc": process.returncode,
    }
    for key, label in (("1", "registration_ms"), ("2", "authenticated_register_ms")):
        values = sorted(rtt[key])
        if values:
            result[label] = {
                "p50": round(_pct(values, 50), 2),
                "p90": round(_pct(values, 90), 2),
                "p99": round(_pct(values, 99), 2),
                "max": round(values[-1], 2),
                "mean": round(statistics.fmean(values), 2),
            }
    if err.strip() and process.returncode not in (0, 1):
        result["sipp_stderr"] = err.decode(errors="replace")[-500:]
    errors = workdir / "errors.log"
    if failed and errors.exists():
        result["first_errors"] = errors.read_text(errors="replace")[:800]
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _last_stat_row(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _epoch(stamp: str) -> float:
    """The epoch seconds at the end of sipp's 'date<TAB>time<TAB>epoch' stamps."""
    try:
        return float(stamp.split("\t")[-1])
    except ValueError:
        return 0.0


def measure(target: Target, tmp: Path, seconds: float, concurrency: int) -> dict[str, Any]:
    """Calibrate, then one run sized to last about ``seconds``."""
    calibration = run_sipp(target, tmp, CALIBRATION_CALLS, concurrency)
    rate = max(calibration["registrations_per_s"], 50.0)
    calls = max(CALIBRATION_CALLS, int(rate * seconds))
    quiet = wait_quiet()
    result = {"concurrency": concurrency, "box_busy_before_pct": quiet, **run_sipp(target, tmp, calls, concurrency)}
    result["calibration_registrations_per_s"] = calibration["registrations_per_s"]
    print(
        f"{target.name:>12} -l {concurrency:3d}: {result['registrations_per_s']:8.1f} registrations/s "
        f"({result['successful']} ok, {result['failed']} failed, {result['retransmissions']} retrans) "
        f"in {result['elapsed_s']:.1f} s; p50/p99 {result.get('registration_ms', {}).get('p50')}/"
        f"{result.get('registration_ms', {}).get('p99')} ms; CPU server {result['server_cpu_pct_of_one_core']}%, "
        f"sipp {result['sipp_cpu_pct_of_one_core']}%, others {result['other_cpu_pct_of_one_core']}%",
        flush=True,
    )
    return result


def sweep(target: Target, tmp: Path, seconds: float, levels: list[int]) -> dict[str, Any]:
    """One measured run per concurrency; the best clean one (no failed registration) is the figure."""
    runs = [measure(target, tmp, seconds, concurrency) for concurrency in levels]
    clean = [r for r in runs if r["failed"] == 0] or runs
    best = max(clean, key=lambda r: r["registrations_per_s"])
    return {"best": best, "runs": runs}


# ---------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    parser.add_argument("--voipbin-concurrency", default="10,50", help="sipp -l values against the platform")
    parser.add_argument("--kamailio-concurrency", default="50,100,200", help="sipp -l values against Kamailio")
    parser.add_argument("--kamailio-children", type=int, default=4, help="UDP workers of the multi-process run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sip.json")
    args = parser.parse_args()
    # SIGTERM as well as Ctrl-C unwinds through the finally blocks that end every process we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed: apt-get install sip-tester")

    began = time.perf_counter()
    binary = ensure_kamailio()
    version = kamailio_version(binary)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sip-") as tmp_name:
        tmp = Path(tmp_name)
        with platform_target(tmp) as target:
            results["voipbin"] = sweep(target, tmp, args.seconds, _levels(args.voipbin_concurrency))
        for children in sorted({1, args.kamailio_children}):
            with kamailio_target(tmp, binary, children) as target:
                results[target.name] = sweep(target, tmp, args.seconds, _levels(args.kamailio_concurrency))

    ours = results["voipbin"]["best"]
    anchor = results[f"kamailio-{args.kamailio_children}"]["best"]
    single = results["kamailio-1"]["best"]
    summary = {
        "voipbin_registrations_per_s": ours["registrations_per_s"],
        "voipbin_register_requests_per_s": ours["register_requests_per_s"],
        "kamailio_registrations_per_s": anchor["registrations_per_s"],
        "kamailio_single_worker_registrations_per_s": single["registrations_per_s"],
        "ratio_voipbin_to_kamailio": _ratio(ours, anchor),
        "ratio_voipbin_to_kamailio_single_worker": _ratio(ours, single),
        "voipbin_registration_ms": ours.get("registration_ms"),
        "kamailio_registration_ms": anchor.get("registration_ms"),
        "best_concurrency": {name: r["best"]["concurrency"] for name, r in results.items()},
        "failures": {name: sum(run["failed"] for run in r["runs"]) for name, r in results.items()},
        "voipbin_server_cpu_pct_of_one_core": ours["server_cpu_pct_of_one_core"],
        "kamailio_version": version,
        "run_seconds": round(time.perf_counter() - began, 1),
    }
    report = {
        "benchmark": "sip",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit_id(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "setup": {
            "load_generator": _sipp_version(),
            "scenario": "bench/sip/register.xml: REGISTER -> 401 -> REGISTER with digest (MD5, qop=auth) -> 200, "
            "new Call-ID per registration, same user and Contact every time, UDP on 127.0.0.1",
            "drive": "closed loop: sipp -l N (registrations in flight) -r 100000 -buff_size 4 MiB; -m sized by a "
            f"{CALIBRATION_CALLS}-registration calibration run to last about {args.seconds:.0f} s; N swept per "
            f"target (voipbin {args.voipbin_concurrency}, kamailio {args.kamailio_concurrency}) and the fastest run "
            "without failed registrations is each target's figure",
            "voipbin": "`voipbin start` (tests/e2e/server.py): embedded SQLite, one process, one extension created "
            "with POST /v1.0/extensions; AOR <extension>@<customer_id>.registrar.voipbin.test",
            "kamailio": f"{version}; bench/sip/kamailio.cfg: pv_auth_check with the password in an AVP, qop=auth + "
            "nonce_count, registrar/usrloc db_mode 0, sl replies; kamailio-1 = one UDP worker, "
            f"kamailio-{args.kamailio_children} = {args.kamailio_children} UDP workers",
            "kamailio_version": version,
            "rates": "registrations_per_s = successful sipp calls / sipp elapsed time; each registration is two "
            "REGISTER transactions (register_requests_per_s)",
            "response_times": "sipp -trace_rtt: registration_ms spans both round trips, "
            "authenticated_register_ms only the second REGISTER -> 200; sipp's clock makes them multiples of "
            "about 4 ms, so sub-4 ms figures read as 0 or 4",
            "note": "server and sipp share the machine's cores, and the machine is shared with other work: each "
            f"measured run first waits up to {QUIET_MAX_WAIT_S:.0f} s ({QUIET_BUDGET_S:.0f} s in all) for a second "
            f"under {QUIET_PCT:.0f}% CPU "
            "(box_busy_before_pct); other_cpu_pct_of_one_core is everything else that ran meanwhile. sipp's CPU is "
            "reported to show when the load generator is the limit",
        },
        "results": {"summary": summary, **results},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _ratio(ours: dict[str, Any], theirs: dict[str, Any]) -> float | None:
    return round(ours["registrations_per_s"] / theirs["registrations_per_s"], 4) if theirs["registrations_per_s"] else None


def _sipp_version() -> str:
    out = subprocess.run(["sipp", "-v"], capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        if "SIPp" in line:
            return line.strip()
    return "sipp"


if __name__ == "__main__":
    main()
