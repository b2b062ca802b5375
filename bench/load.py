"""Load an already running SessionValidator with ghz and keep ghz's JSON and HTML reports.

    .venv/bin/python bench/load.py [--duration 30s] [--concurrency 50] [--connections 4] [--rps 0] ...

Works beside ``make run``: the service address comes from
SESSIONVALIDATOR_ADDR (default localhost:50051); Redis, secrets, cookie name
and key prefix from the same SESSIONVALIDATOR_* variables as the service (with
no secret configured, the development secret in .tmp/dev-secret, as ``make
run`` uses). It mints the workload's sessions into that Redis (removed again
afterwards), checks the service gives every request its expected verdict,
runs ghz, writes ``results/load-<UTC timestamp>/`` (ghz.json, ghz.html,
data files) and prints req/s, p50/p90/p99 and the status code distribution.
Exits 1 when any call ended with a status other than OK: verdicts travel in
OK responses, so an error is never a result.

Every flag has an environment default: LOAD_DURATION, LOAD_CONCURRENCY,
LOAD_CONNECTIONS, LOAD_RPS, LOAD_CPUS, LOAD_SKIP_FIRST, LOAD_SESSIONS, LOAD_METHOD.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import redis
from ghz import (
    BATCH_CALL,
    ROOT,
    SINGLE_CALL,
    GhzSummary,
    LoadShape,
    descriptor_source,
    ensure_ghz,
    ensure_ghz_html,
    ghz_command,
    run_ghz,
)
from workload import VerdictMismatchError, build, check_verdicts, delete_keys, describe, write_files

from sessionvalidator_service.config import ConfigError, Settings

DEV_SECRET = ROOT / ".tmp" / "dev-secret"
BATCH_SIZE = 16


def service_settings(env: Mapping[str, str]) -> Settings:
    """Read the settings as the service does; with no secret set, ``make run``'s development secret."""
    if not env.get("SESSIONVALIDATOR_SECRETS") and not env.get("SESSIONVALIDATOR_SECRETS_FILE") and DEV_SECRET.exists():
        env = {**env, "SESSIONVALIDATOR_SECRETS_FILE": str(DEV_SECRET)}
    return Settings.from_env(env)


def duration_seconds(text: str) -> float:
    """``30s``, ``2m`` or a bare number of seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text.removesuffix(unit)) * units[unit]
    return float(text)


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    """Read the flags, each defaulting to its LOAD_* variable."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--address", default=env.get("SESSIONVALIDATOR_ADDR", "localhost:50051"), help="host:port of the service")
    add("--duration", type=duration_seconds, default=env.get("LOAD_DURATION", "30s"), help="e.g. 30s (default)")
    add("--concurrency", "-c", type=int, default=int(env.get("LOAD_CONCURRENCY", "50")), help="ghz workers (50)")
    add("--connections", type=int, default=int(env.get("LOAD_CONNECTIONS", "4")), help="HTTP/2 connections (4)")
    add("--rps", type=int, default=int(env.get("LOAD_RPS", "0")), help="fixed rate, req/s; 0 = max (default)")
    add("--cpus", type=int, default=int(env.get("LOAD_CPUS", "1")), help="cores ghz may use (1)")
    add("--skip-first", type=int, default=int(env.get("LOAD_SKIP_FIRST", "500")), help="warm-up calls left out (500)")
    add("--sessions", type=int, default=int(env.get("LOAD_SESSIONS", "2000")), help="valid sessions minted (2000)")
    add(
        "--method",
        choices=("single", "batch"),
        default=env.get("LOAD_METHOD", "single"),
        help=f"ValidateSession, or ValidateSessions with {BATCH_SIZE} credentials a call",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Mint, check, load, report; 1 when any call failed."""
    env = dict(os.environ)
    args = parse_args(argv, env)
    try:
        settings = service_settings(env)
    except ConfigError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2
    out = ROOT / "results" / f"load-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    ghz = ensure_ghz()
    client = redis.Redis.from_url(settings.store_url, socket_timeout=5)
    workload = build(
        client,
        settings.secrets,
        cookie_name=settings.cookie_name,
        key_prefix=settings.key_prefix,
        sessions=args.sessions,
    )
    try:
        files = write_files(out / "workload", workload, BATCH_SIZE)
        batch = args.method == "batch"
        print(f"{args.address}: {len(workload.cases)} requests {dict(workload.distribution())}", flush=True)
        try:
            tally = check_verdicts(args.address, workload.cases, batch_size=BATCH_SIZE if batch else 0)
        except VerdictMismatchError as exc:
            print(f"load: {exc}\n(same Redis and secrets as the service? see SESSIONVALIDATOR_*)", file=sys.stderr)
            return 1
        print(f"verdicts: {describe(tally)}", flush=True)
        call = BATCH_CALL if batch else SINGLE_CALL
        shape = LoadShape(args.duration, args.concurrency, args.connections, args.rps, args.cpus, args.skip_first)
        report = out / "ghz.json"
        command = ghz_command(
            ghz,
            args.address,
            call,
            files.batch if batch else files.single,
            shape=shape,
            output=report,
            descriptor=descriptor_source(ghz, args.address, call),
        )
        (out / "command.txt").write_text(" ".join(command) + "\n", encoding="utf-8")
        print(f"ghz: {args.duration:g} s, -c {args.concurrency}, {args.connections} connections ...", flush=True)
        run_ghz(command)
    finally:
        delete_keys(client, workload.keys)
    html = subprocess.run([str(ensure_ghz_html()), str(report)], capture_output=True, check=True).stdout
    (out / "ghz.html").write_bytes(html)
    summary = GhzSummary.from_report(json.loads(report.read_text(encoding="utf-8")))
    unit = f" (x{BATCH_SIZE} credentials = {summary.window_rps * BATCH_SIZE:,.0f} credentials/s)" if batch else ""
    print(f"{summary.describe()}{unit}")
    print(f"reports: {report.relative_to(ROOT)}, {(out / 'ghz.html').relative_to(ROOT)}")
    if summary.errors:
        print(f"load: FAILED, {summary.errors} calls ended with a status other than OK", file=sys.stderr)
        if any("exhausted" in status.lower() for status in summary.statuses):
            print(
                "load: the service rate-limits bad attempts per peer, and this workload is 14 % bad cookies: "
                "run it with SESSIONVALIDATOR_RATE_LIMIT=off (make run honours it)",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
