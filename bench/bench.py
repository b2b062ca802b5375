"""Benchmark our service against the Go and Node reference peers, on one machine, in one run.

    .venv/bin/python bench/bench.py [--quick] [--variant NAME[=VAR=VALUE ...]] ...

One redis-server (no persistence) is started for the run and one workload
minted into it (bench/workload.py). Every implementation is started, checked
to answer the whole workload with the expected verdicts, then measured with
ghz (through server reflection, or the compiled contract for a server whose
reflection ghz cannot use; see ghz.descriptor_source):

1. max throughput, closed loop, alternating A B C A B C ... for ``--rounds``
   runs of ``--duration`` seconds each, after a short warm-up per run;
2. fixed-rate runs (``--rate`` req/s, open loop), ``--rate-rounds`` alternating rounds;
3. ValidateSessions (``--batch-size`` credentials a call) for each variant of
   ours, at max throughput, once per round.

Per run: req/s, p50/p90/p99 (OK responses only; errors are counted apart and
must be 0), CPU per request of the server's whole process tree, of ghz and of
Redis, the machine's busy cores (interrupts, this script and unexplained load
apart), and the server tree's peak RSS. Before each run it waits (up to
``--quiet-wait`` s) for other load on the machine to pass. Results go to
``results/bench-<UTC timestamp>/``: the ghz reports (without per-call details),
``summary.json``, ``table.md`` and ``chart.png``. Exits 1 when any call failed.

``--variant ours-2w=SESSIONVALIDATOR_WORKERS=2`` adds a run of our service
with extra environment (repeatable; the default is one variant, ``ours``).
``--mongo`` adds ``ours-mongo``: our service over a FerretDB (MongoDB wire
protocol, SQLite; tests/support/processes.py) holding the same sessions as
connect-mongo documents; its "Redis CPU" column is then FerretDB's. FerretDB
1.24's SQLite backend scans the collection on every find, so these figures
bound FerretDB, not the MongoDB store (the variant's store timeout is 1 s).
``--redis-tls`` adds a twin ``<name>-tls`` of every Redis variant of ours,
reading the same redis-server through its TLS port (``rediss://``, a
self-signed certificate verified with ``ssl_ca_certs``); its "Redis CPU"
column includes Redis's side of TLS. With
``--variant ours --variant ours-nocache=SESSIONVALIDATOR_SESSION_CACHE=0
--redis-tls`` it compares plain and TLS, session cache on and off.
``bench.py --rerender results/bench-<stamp>`` redraws a run's table and chart.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import secrets
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ghz import (
    BATCH_CALL,
    GHZ_VERSION,
    SINGLE_CALL,
    GhzSummary,
    LoadShape,
    descriptor_source,
    ensure_ghz,
    ghz_command,
    run_ghz,
)
from procs import (
    MIB,
    FerretDBServer,
    RedisServer,
    Server,
    TreeMonitor,
    cpu_seconds,
    free_port,
    host_cpu,
    wait_for_quiet,
)
from workload import Workload, build, check_verdicts, describe, write_files

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "bench" / "reference"
WORK = ROOT / ".tmp" / "bench"
COOKIE_NAME = "connect.sid"
KEY_PREFIX = "sess:"
REFS = ("go", "node")
MONGO_VARIANT = "ours-mongo"
MONGO_URL_SLOT = "mongodb://set-when-ferretdb-starts/"  # replaced by the FerretDB URL in main()
REDIS_TLS_URL_SLOT = "rediss://set-when-redis-starts/"  # replaced by the TLS port's URL in main()
DASH = "\N{EN DASH}"


@dataclass(frozen=True, slots=True)
class Implementation:
    """A server to measure: a variant of ours (with extra env) or a reference."""

    name: str
    kind: str  # "ours", "echo" (the framework floor, bench/echo_server.py), "go" or "node"
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a run depends on."""

    implementations: list[Implementation]
    rounds: int
    duration_s: float
    warmup_s: float
    rate: int
    rate_duration_s: float
    batch_size: int
    concurrency: int
    connections: int
    ghz_cpus: int
    sessions: int
    seed: int
    quiet_wait_s: float
    profile: bool = False
    rate_rounds: int = 1  # summaries written before --rate-rounds have one

    @property
    def ours(self) -> list[Implementation]:
        """The variants of our service."""
        return [impl for impl in self.implementations if impl.kind == "ours"]


@dataclass(frozen=True, slots=True)
class Run:
    """One measured ghz run."""

    implementation: str
    phase: str  # "max", "rate" or "batch"
    round: int
    rps: float
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    statuses: dict[str, int]
    server_cpu_us: float  # per call, whole process tree
    server_cores: float
    peak_rss_mib: float  # summed over the tree, sampled every 200 ms
    peak_process_mib: float  # the largest single process (VmHWM)
    processes: int
    ghz_cpu_us: float
    redis_cpu_us: float
    host_busy_cores: float
    irq_cores: float  # interrupts and softirqs: mostly the loopback traffic, charged to no process
    bench_cores: float  # this script (its /proc sampling thread)
    other_cores: float  # busy cores left unexplained: other processes on the machine
    host_steal_cores: float
    credentials_per_call: int
    cpu_by_pid: dict[int, float]
    cpu_by_thread: dict[str, float]  # CPU seconds of the server's busiest threads over the run
    background_cores: float = 0.0  # other load on the machine just before the run


def parse_variant(text: str) -> Implementation:
    """``NAME`` or ``NAME=VAR=VALUE [VAR=VALUE ...]`` (shell-quoted, space-separated)."""
    name, _, assignments = text.partition("=")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in REFS:
        msg = f"bad variant name {name!r}: letters, digits, . _ - only, and not {' or '.join(REFS)}"
        raise argparse.ArgumentTypeError(msg)
    env = {}
    for item in shlex.split(assignments):
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"variant {name}: expected VAR=VALUE, got {item!r}"
            raise argparse.ArgumentTypeError(msg)
        env[key] = value
    return Implementation(name, "ours", env)


def parse_args(argv: Sequence[str] | None) -> Config:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 round x 5 s, 1 s warm-up, 5 s rate run")
    parser.add_argument("--rounds", type=int, help="alternating rounds at max throughput (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 20)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each run (default 3)")
    parser.add_argument("--rate", type=int, default=1000, help="req/s of the fixed-rate run (default 1000)")
    parser.add_argument("--rate-duration", type=float, help="seconds of the fixed-rate run (default 15)")
    parser.add_argument(
        "--rate-rounds",
        type=int,
        default=1,
        help="alternating fixed-rate rounds (default 1; p99 at a fixed rate needs several on a shared machine)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="credentials per ValidateSessions call; 0 skips")
    parser.add_argument("--concurrency", "-c", type=int, default=50, help="ghz workers (default 50)")
    parser.add_argument("--connections", type=int, default=8, help="ghz connections (default 8)")
    parser.add_argument("--ghz-cpus", type=int, default=1, help="cores ghz may use (GOMAXPROCS, default 1)")
    parser.add_argument("--sessions", type=int, default=2000, help="valid sessions in the workload (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds to wait, before each run, for other load on the machine to pass (default 120)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        metavar="NAME[=VAR=VALUE ...]",
        help="a run of our service with extra environment (repeatable; default: ours)",
    )
    parser.add_argument("--refs", default=",".join(REFS), help="references to run, comma-separated ('' for none)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the measured runs, sample each variant of ours under load with py-spy "
        "(profile-<name>.svg flame graph and profile-<name>.md top functions in the results)",
    )
    parser.add_argument(
        "--echo",
        action="store_true",
        help="also run the framework floor (bench/echo_server.py) on both server kinds; adds our own cost per call",
    )
    parser.add_argument(
        "--mongo", action="store_true", help="also run ours over MongoDB (FerretDB, connect-mongo documents)"
    )
    parser.add_argument(
        "--redis-tls", action="store_true", help="also run each variant of ours over rediss:// (<name>-tls)"
    )
    args = parser.parse_args(argv)
    refs = [ref for ref in args.refs.split(",") if ref]
    if unknown := set(refs) - set(REFS):
        parser.error(f"--refs: unknown {sorted(unknown)}")
    variants = args.variant or [Implementation("ours", "ours")]
    if args.redis_tls:
        variants += [
            Implementation(f"{v.name}-tls", "ours", {**v.extra_env, "SESSIONVALIDATOR_STORE_URL": REDIS_TLS_URL_SLOT})
            for v in variants
            if "SESSIONVALIDATOR_STORE_URL" not in v.extra_env
        ]
    if args.mongo:
        # FerretDB's SQLite backend scans the collection for every find (no index use): with the
        # workload's ~2,500 sessions a lookup costs it ~10 ms, so the store timeout is raised to
        # measure throughput rather than timeouts. Real MongoDB answers from the _id index.
        mongo_env = {"SESSIONVALIDATOR_STORE_URL": MONGO_URL_SLOT, "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "1000"}
        variants = [*variants, Implementation(MONGO_VARIANT, "ours", mongo_env)]
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        parser.error("--variant names must differ")
    quick = args.quick
    echoes = (
        [
            Implementation("echo-grpcio", "echo"),
            Implementation("echo-native", "echo", {"SESSIONVALIDATOR_SERVER": "native"}),
        ]
        if args.echo
        else []
    )
    return Config(
        implementations=[*variants, *echoes, *(Implementation(ref, ref) for ref in refs)],
        rounds=args.rounds or (1 if quick else 3),
        duration_s=args.duration or (5.0 if quick else 20.0),
        warmup_s=args.warmup if args.warmup is not None else (1.0 if quick else 3.0),
        rate=args.rate,
        rate_duration_s=args.rate_duration or (5.0 if quick else 15.0),
        rate_rounds=max(1, args.rate_rounds),
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        connections=args.connections,
        ghz_cpus=args.ghz_cpus,
        sessions=args.sessions,
        seed=args.seed,
        quiet_wait_s=args.quiet_wait,
        profile=args.profile,
    )


# ---------------------------------------------------------------- implementations


def build_commands(config: Config) -> dict[str, list[str]]:
    """Build the references (go build, npm ci) and return each implementation's command."""
    WORK.mkdir(parents=True, exist_ok=True)
    commands = {impl.name: [sys.executable, "-m", "sessionvalidator_service", "serve"] for impl in config.ours}
    for impl in config.implementations:
        if impl.kind == "echo":
            commands[impl.name] = [sys.executable, str(ROOT / "bench" / "echo_server.py")]
    kinds = {impl.kind for impl in config.implementations}
    if "go" in kinds:
        binary = WORK / "reference-go"
        print("building the Go reference (go build) ...", flush=True)
        subprocess.run(["go", "build", "-o", str(binary), "."], cwd=REFERENCE / "go", check=True)
        commands["go"] = [str(binary)]
    if "node" in kinds:
        node_dir = REFERENCE / "node"
        lock = hashlib.sha256((node_dir / "package-lock.json").read_bytes()).hexdigest()
        stamp = WORK / "node-ci.stamp"
        if not (node_dir / "node_modules").is_dir() or not stamp.exists() or stamp.read_text() != lock:
            print("installing the Node reference (npm ci) ...", flush=True)
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=node_dir, check=True)
            stamp.write_text(lock)
        commands["node"] = ["node", str(node_dir / "server.js")]
    return commands


def server_for(
    impl: Implementation, command: list[str], *, redis_url: str, secrets: list[str], logs: Path, port: int
) -> Server:
    """Configure a server: the same secrets, cookie name and key prefix for all; a fixed free port each."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONVALIDATOR_", "REF_"))}
    listen = f"127.0.0.1:{port}"
    if impl.kind in {"ours", "echo"}:
        env = {
            "SESSIONVALIDATOR_LISTEN": listen,  # fixed: workers share one port
            **({} if "SESSIONVALIDATOR_STORE_URL" in impl.extra_env else {"SESSIONVALIDATOR_REDIS_URL": redis_url}),
            "SESSIONVALIDATOR_SECRETS": json.dumps(secrets),
            "SESSIONVALIDATOR_COOKIE_NAME": COOKIE_NAME,
            "SESSIONVALIDATOR_KEY_PREFIX": KEY_PREFIX,
            # 14 % of the workload is bad cookies from one peer; the references have no limiter (README).
            "SESSIONVALIDATOR_RATE_LIMIT": "off",
            **impl.extra_env,
        }
    else:
        env = {
            "REF_LISTEN": listen,
            "REF_REDIS_URL": redis_url,
            "REF_SECRETS": json.dumps(secrets),
            "REF_COOKIE_NAME": COOKIE_NAME,
            "REF_KEY_PREFIX": KEY_PREFIX,
        }
    return Server(impl.name, command, {**inherited, **env}, logs / f"{impl.name}.log")


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True, slots=True)
class Target:
    """Where ghz sends what, and how it learns the method."""

    ghz: Path
    server: Server
    redis_pid: int
    call: str
    data_file: Path
    credentials_per_call: int = 1
    descriptor: tuple[str, ...] = ()  # ghz flags: () is server reflection


def warm_up(target: Target, shape: LoadShape, scratch: Path) -> None:
    """Run ghz unmeasured."""
    if shape.duration_s > 0:
        run_ghz(
            ghz_command(
                target.ghz,
                target.server.address,
                target.call,
                target.data_file,
                shape=shape,
                output=scratch,
                descriptor=target.descriptor,
            )
        )


def measure(target: Target, shape: LoadShape, report_path: Path, phase: str, round_: int) -> Run:
    """One ghz run with the server tree, Redis, ghz and the machine measured over it."""
    tmp = report_path.with_suffix(".full.json")
    command = ghz_command(
        target.ghz,
        target.server.address,
        target.call,
        target.data_file,
        shape=shape,
        output=tmp,
        descriptor=target.descriptor,
    )
    monitor = TreeMonitor(target.server.pid).start()
    redis_before = cpu_seconds([target.redis_pid]).get(target.redis_pid, 0.0)
    host_before = host_cpu()
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_ghz(command)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    host_after = host_cpu()
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    redis_after = cpu_seconds([target.redis_pid]).get(target.redis_pid, 0.0)
    usage = monitor.stop()
    report = json.loads(tmp.read_text(encoding="utf-8"))
    tmp.unlink()
    report.pop("details", None)  # one entry per call: tens of MB per run
    report.get("options", {})["data"] = f"the messages of {target.data_file.relative_to(report_path.parents[1])}"
    report_path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    summary = GhzSummary.from_report(report)
    calls = max(summary.count, 1)
    window = max(summary.total_s, 1e-9)
    ghz_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    redis_cpu = redis_after - redis_before
    host = host_after - host_before
    bench_cpu = (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime)
    accounted = usage.cpu_s + ghz_cpu + redis_cpu + bench_cpu + host.irq
    return Run(
        implementation=target.server.name,
        phase=phase,
        round=round_,
        rps=summary.rps,
        count=summary.count,
        p50_ms=summary.p50_ms,
        p90_ms=summary.p90_ms,
        p99_ms=summary.p99_ms,
        errors=summary.errors,
        statuses=summary.statuses,
        server_cpu_us=usage.cpu_s / calls * 1e6,
        server_cores=usage.cpu_s / window,
        peak_rss_mib=usage.peak_rss_bytes / MIB,
        peak_process_mib=usage.peak_process_bytes / MIB,
        processes=usage.processes,
        ghz_cpu_us=ghz_cpu / calls * 1e6,
        redis_cpu_us=redis_cpu / calls * 1e6,
        host_busy_cores=host.busy / window,
        irq_cores=host.irq / window,
        bench_cores=bench_cpu / window,
        other_cores=(host.busy - accounted) / window,
        host_steal_cores=host.steal / window,
        credentials_per_call=target.credentials_per_call,
        cpu_by_pid={pid: round(s, 3) for pid, s in usage.cpu_by_pid.items()},
        cpu_by_thread=usage.cpu_by_thread,
    )


def print_run(run: Run) -> None:
    """Print one run on one line."""
    per = "call" if run.credentials_per_call == 1 else f"call of {run.credentials_per_call}"
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(run.statuses.items()))
    print(
        f"  {run.phase:5} r{run.round} {run.implementation:12} {run.rps:9,.0f} req/s  "
        f"p50 {run.p50_ms:6.2f}  p90 {run.p90_ms:6.2f}  p99 {run.p99_ms:6.2f} ms  "
        f"server {run.server_cpu_us:6.0f} us/{per} ({run.server_cores:.2f} cores)  ghz {run.ghz_cpu_us:4.0f} us  "
        f"redis {run.redis_cpu_us:4.0f} us  busy {run.host_busy_cores:.2f} cores (irq {run.irq_cores:.2f}, "
        f"bench {run.bench_cores:.2f}, other {run.other_cores:.2f})  "
        f"rss {run.peak_rss_mib:.0f} MiB  before {run.background_cores:.2f}  "
        f"[{statuses}]",
        flush=True,
    )


def run_phases(
    config: Config, targets: Mapping[str, Target], batch_targets: Mapping[str, Target], out: Path
) -> list[Run]:
    """Run the alternating max-throughput rounds, then the fixed-rate runs, then the batch runs."""
    runs: list[Run] = []
    reports = out / "ghz"
    reports.mkdir(parents=True, exist_ok=True)
    scratch = out / "warmup.json"
    closed = LoadShape(config.duration_s, config.concurrency, config.connections, 0, config.ghz_cpus)
    warm = LoadShape(config.warmup_s, config.concurrency, config.connections, 0, config.ghz_cpus)
    rate = LoadShape(config.rate_duration_s, config.concurrency, config.connections, config.rate, config.ghz_cpus)

    def record(target: Target, shape: LoadShape, phase: str, round_: int, *, warm_first: bool = True) -> None:
        background = wait_for_quiet(config.quiet_wait_s)  # the box may be shared: let other load pass first
        if warm_first:
            warm_up(target, warm, scratch)
        run = measure(target, shape, reports / f"{phase}-r{round_}-{target.server.name}.json", phase, round_)
        run = dataclasses.replace(run, background_cores=round(background, 2))
        print_run(run)
        runs.append(run)

    print(f"max throughput: {config.rounds} round(s) x {config.duration_s:g} s, alternating", flush=True)
    for round_ in range(1, config.rounds + 1):
        for target in targets.values():
            record(target, closed, "max", round_)
    print(
        f"fixed rate: {config.rate} req/s for {config.rate_duration_s:g} s, {config.rate_rounds} round(s), alternating",
        flush=True,
    )
    for round_ in range(1, config.rate_rounds + 1):
        for target in targets.values():
            record(target, rate, "rate", round_, warm_first=False)
    if batch_targets:
        print(f"batch: ValidateSessions x {config.batch_size}", flush=True)
        for round_ in range(1, config.rounds + 1):
            for target in batch_targets.values():
                record(target, closed, "batch", round_)
    if config.profile:
        for impl in config.ours:
            profile(targets[impl.name], closed, out, scratch)
    scratch.unlink(missing_ok=True)
    return runs


def profile(target: Target, shape: LoadShape, out: Path, scratch: Path) -> None:
    """Sample the server under max-throughput load with py-spy: a flame graph and a top-functions table.

    Not a measured run: sampling costs the server some CPU.
    """
    name = target.server.name
    # py-spy's wheel installs a binary beside the interpreter (make bench-deps).
    spy = [str(Path(sys.executable).with_name("py-spy"))]
    seconds = max(2, int(shape.duration_s) - 1)
    print(f"profiling {name} with py-spy for {seconds} s ...", flush=True)
    common = ["-p", str(target.server.pid), "-d", str(seconds), "-r", "250", "--nonblocking"]
    raw = out / f"profile-{name}.txt"
    recorders = [
        subprocess.Popen(
            [*spy, "record", *common, "-f", "flamegraph", "-o", str(out / f"profile-{name}.svg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*spy, "record", *common, "-f", "raw", "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ),
    ]
    warm_up(target, dataclasses.replace(shape, duration_s=seconds + 1), scratch)
    for recorder in recorders:
        recorder.wait(timeout=seconds + 30)
    if raw.exists():
        (out / f"profile-{name}.md").write_text(top_functions(raw.read_text()), encoding="utf-8")


def top_functions(raw: str, top: int = 30) -> str:
    """A markdown table of the functions where most samples were taken (self) and spent below (total)."""
    own: dict[str, int] = {}
    below: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [frame.split(" (")[0] + " " + frame.rpartition("/")[2].rstrip(")") for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            below[frame] = below.get(frame, 0) + count
    lines = [f"{total} samples", "", "| self % | total % | function (file:line) |", "|--:|--:|---|"]
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"| {count / total * 100:.1f} | {below[frame] / total * 100:.1f} | `{frame}` |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- reporting


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Per phase and implementation: median, min and max across runs; peaks; total errors."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.phase, run.implementation), []).append(run)
    summary: dict[str, dict[str, Any]] = {}
    metrics = (
        *("rps", "p50_ms", "p90_ms", "p99_ms", "server_cpu_us", "server_cores", "ghz_cpu_us", "redis_cpu_us"),
        *("host_busy_cores", "irq_cores", "bench_cores", "other_cores", "host_steal_cores", "background_cores"),
    )
    for (phase, name), group in groups.items():
        entry: dict[str, Any] = {m: spread([getattr(r, m) for r in group]) for m in metrics}
        entry["runs"] = len(group)
        entry["errors"] = sum(r.errors for r in group)
        entry["peak_rss_mib"] = max(r.peak_rss_mib for r in group)
        entry["peak_process_mib"] = max(r.peak_process_mib for r in group)
        entry["processes"] = max(r.processes for r in group)
        entry["credentials_per_call"] = group[0].credentials_per_call
        summary.setdefault(phase, {})[name] = entry
    return summary


def _fmt(stat: Mapping[str, float], digits: int = 0) -> str:
    one = f"{{:,.{digits}f}}"
    if stat["min"] == stat["max"]:
        return one.format(stat["median"])
    return f"{one.format(stat['median'])} ({one.format(stat['min'])}{DASH}{one.format(stat['max'])})"


def _load(entry: Mapping[str, Any]) -> str:
    """Machine busy cores, with the share of interrupts and of load no measured process explains."""
    irq = entry["irq_cores"]["median"] if "irq_cores" in entry else float("nan")
    return f"{entry['host_busy_cores']['median']:.2f} ({irq:.2f}; {entry['other_cores']['median']:.2f})"


def ratios(summary: Mapping[str, Mapping[str, Any]], config: Config) -> dict[str, dict[str, float]]:
    """Median req/s of each variant of ours over each reference's."""
    peak = summary.get("max", {})
    out: dict[str, dict[str, float]] = {}
    for impl in config.ours:
        for ref in REFS:
            if impl.name in peak and ref in peak:
                out.setdefault(impl.name, {})[ref] = peak[impl.name]["rps"]["median"] / peak[ref]["rps"]["median"]
    return out


def own_costs(summary: Mapping[str, Mapping[str, Any]], config: Config) -> dict[str, tuple[str, float, float]]:
    """Per variant of ours: its server kind and CPU per call above the echo of that kind (max, fixed rate)."""
    out: dict[str, tuple[str, float, float]] = {}
    nan = float("nan")
    for impl in config.ours:
        kind = impl.extra_env.get("SESSIONVALIDATOR_SERVER", "grpcio")
        echo = f"echo-{kind}"
        costs = []
        for phase in ("max", "rate"):
            entries = summary.get(phase, {})
            if impl.name in entries and echo in entries:
                costs.append(entries[impl.name]["server_cpu_us"]["median"] - entries[echo]["server_cpu_us"]["median"])
            else:
                costs.append(nan)
        if any(not math.isnan(cost) for cost in costs):
            out[impl.name] = (kind, costs[0], costs[1])
    return out


def markdown(summary: Mapping[str, Mapping[str, Any]], config: Config, command_line: str) -> str:
    """Render the result tables (medians across rounds, min-max in brackets)."""
    lines = [
        f"Command: `{command_line}`",
        "",
        (
            f"Max throughput, closed loop: ghz -c {config.concurrency}, {config.connections} connections, "
            f"--cpus {config.ghz_cpus}; {config.rounds} alternating round(s) of {config.duration_s:g} s; "
            f"median (min{DASH}max). CPU per request is the server's whole process tree."
        ),
        "",
        (
            "| implementation | req/s | p50 ms | p90 ms | p99 ms | errors | server CPU µs/req | server cores "
            "| peak RSS MiB, tree (largest process) | ghz CPU µs/req | Redis CPU µs/req "
            "| machine busy cores (irq; unexplained) |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, e in summary.get("max", {}).items():
        lines.append(
            f"| {name} | {_fmt(e['rps'])} | {_fmt(e['p50_ms'], 2)} | {_fmt(e['p90_ms'], 2)} | {_fmt(e['p99_ms'], 2)} "
            f"| {e['errors']} | {_fmt(e['server_cpu_us'])} | {_fmt(e['server_cores'], 2)} "
            f"| {e['peak_rss_mib']:.0f} ({e['peak_process_mib']:.0f}) | {_fmt(e['ghz_cpu_us'])} "
            f"| {_fmt(e['redis_cpu_us'], 1)} "
            f"| {_load(e)} |"
        )
    if own := own_costs(summary, config):
        lines += [
            "",
            (
                "Our own cost: server CPU per call of ours minus that of the bare echo on the same server kind "
                "(bench/echo_server.py: same framework, same cookie check, no store)."
            ),
            "",
            "| implementation | server kind | own CPU µs/req, max throughput | own CPU µs/req, fixed rate |",
            "|---|---|--:|--:|",
        ]
        for name, (kind, at_max, at_rate) in own.items():
            lines.append(f"| {name} | {kind} | {at_max:,.0f} | {at_rate:,.0f} |")
    if rates := ratios(summary, config):
        lines += ["", "| ours ÷ reference, req/s | ÷ go | ÷ node |", "|---|--:|--:|"]
        for name, by_ref in rates.items():
            cells = [f"{by_ref[ref]:.2f}" if ref in by_ref else "—" for ref in REFS]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    if fixed := summary.get("rate"):
        lines += [
            "",
            (
                f"Fixed rate, open loop: --rps {config.rate} for {config.rate_duration_s:g} s, "
                f"{config.rate_rounds} alternating round(s); median."
            ),
            "",
            "| implementation | req/s | p50 ms | p90 ms | p99 ms | errors | server CPU µs/req | server cores |",
            "|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for name, e in fixed.items():
            lines.append(
                f"| {name} | {_fmt(e['rps'])} | {_fmt(e['p50_ms'], 2)} | {_fmt(e['p90_ms'], 2)} "
                f"| {_fmt(e['p99_ms'], 2)} | {e['errors']} | {_fmt(e['server_cpu_us'])} "
                f"| {_fmt(e['server_cores'], 2)} |"
            )
    if batch := summary.get("batch"):
        lines += [
            "",
            f"Batch: ValidateSessions, {config.batch_size} credentials a call, closed loop as above.",
            "",
            "| implementation | calls/s | credentials/s | p50 ms | p99 ms | errors | server CPU µs/credential |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for name, e in batch.items():
            k = e["credentials_per_call"]
            lines.append(
                f"| {name} | {_fmt(e['rps'])} | {_fmt({key: v * k for key, v in e['rps'].items()})} "
                f"| {_fmt(e['p50_ms'], 2)} | {_fmt(e['p99_ms'], 2)} | {e['errors']} "
                f"| {e['server_cpu_us']['median'] / k:,.1f} |"
            )
    return "\n".join(lines) + "\n"


def draw_chart(summary: Mapping[str, Mapping[str, Any]], rate: int, path: Path) -> None:
    """Draw req/s (median, min-max whiskers) and p99 per implementation as a small PNG."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    peak = summary.get("max", {})
    names = list(peak)
    batch = summary.get("batch", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    labels = [*names, *(f"{n}\nbatch (cred/s)" for n in batch)]
    stats = [peak[n]["rps"] for n in names]
    stats += [{k: v * batch[n]["credentials_per_call"] for k, v in batch[n]["rps"].items()} for n in batch]
    medians = [s["median"] for s in stats]
    whiskers = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
    colors = ["#4477aa"] * len(names) + ["#88ccee"] * len(batch)
    left.bar(range(len(labels)), medians, yerr=whiskers, color=colors, capsize=4)
    left.set_xticks(range(len(labels)), labels, fontsize=8)
    left.set_title(f"max throughput, req/s (median, min{DASH}max)", fontsize=9)
    for x, s in enumerate(stats):
        left.annotate(
            f"{s['median']:,.0f}",
            (x, s["max"]),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    left.set_ylim(0, max(s["max"] for s in stats) * 1.12)
    fixed = summary.get("rate", {})
    width = 0.4
    series = [
        ([peak[n]["p99_ms"]["median"] for n in names], "at max throughput", "#4477aa", -width / 2),
        (
            [fixed[n]["p99_ms"]["median"] if n in fixed else float("nan") for n in names],
            f"at {rate:,} req/s",
            "#ddaa33",
            width / 2,
        ),
    ]
    for values, label, color, offset in series:
        xs = [i + offset for i in range(len(names))]
        right.bar(xs, values, width, label=label, color=color)
        for bar_x, y in zip(xs, values, strict=True):
            right.annotate(
                f"{y:.1f}", (bar_x, y), ha="center", va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points"
            )
    right.axhline(2.0, color="#aa3377", linewidth=0.8, linestyle="--", label="target at 1,000 req/s: 2 ms")
    right.set_yscale("log")
    top = max((v for values, *_ in series for v in values if not math.isnan(v)), default=2.0)
    right.set_yticks([t for t in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= 2 * top])
    right.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    right.yaxis.set_minor_formatter(ticker.NullFormatter())
    right.set_xticks(range(len(names)), names, fontsize=8)
    right.set_title("p99 latency, ms (log scale)", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def ensure_plotting() -> None:
    """Stop with a hint when matplotlib is missing or not the version bench/requirements.txt pins.

    Installing is ``make bench-deps``'s job (``make bench`` runs it first): the benchmark never
    installs anything into the interpreter it runs in.
    """
    requirements = ROOT / "bench" / "requirements.txt"
    pinned = re.search(r"^matplotlib==(\S+)", requirements.read_text(encoding="utf-8"), re.MULTILINE)
    try:
        installed = importlib.metadata.version("matplotlib")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if pinned is None or installed != pinned.group(1):
        wanted = pinned.group(1) if pinned else "?"
        print(f"bench: matplotlib {installed or 'missing'}, bench/requirements.txt pins {wanted}: run make bench-deps")
        raise SystemExit(2)


def _version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "not installed"


def code_version() -> dict[str, Any]:
    """The commit measured, and which files of the service differed from it (read-only git)."""
    head = _version(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    changed = _version(["git", "-C", str(ROOT), "status", "--porcelain", "--", "service", "bench/reference"])
    return {"commit": head, "uncommitted": [line[3:] for line in changed.splitlines()]}


def machine_facts() -> dict[str, Any]:
    """Describe the machine and the versions that shape the numbers."""
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(encoding="ascii"), re.MULTILINE)
    packages = ("grpcio", "protobuf", "redis", "hiredis", "uvloop", "orjson")
    go_mod = (REFERENCE / "go" / "go.mod").read_text(encoding="utf-8") if (REFERENCE / "go" / "go.mod").exists() else ""
    grpc_go = re.search(r"google\.golang\.org/grpc (v\S+)", go_mod)
    package_json = REFERENCE / "node" / "package.json"
    node_deps = json.loads(package_json.read_text(encoding="utf-8"))["dependencies"] if package_json.exists() else {}
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model.group(1) if model else "unknown",
        "memory_gib": round(int(memory.group(1)) / 1024 / 1024, 1) if memory else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "go": _version(["go", "version"]),
        "node": _version(["node", "--version"]),
        "redis_server": _version(["redis-server", "--version"]),
        "ghz": GHZ_VERSION,
        "python_packages": {name: importlib.metadata.version(name) for name in packages},
        "grpc_go": grpc_go.group(1) if grpc_go else None,
        "grpc_js": node_deps.get("@grpc/grpc-js"),
        "node_redis": node_deps.get("redis"),
    }


# ---------------------------------------------------------------- main


def sanity(servers: Mapping[str, Server], config: Config, workload: Workload) -> None:
    """Every implementation must give every request its expected verdict before anything is timed."""
    print(f"sanity: {len(workload.cases)} requests {dict(workload.distribution())}", flush=True)
    for impl in config.implementations:
        address = servers[impl.name].address
        if impl.kind == "echo":  # answers from the cookie alone, by design
            print(f"  {impl.name:12} (the framework floor: no store, verdicts not checked)", flush=True)
            continue
        print(f"  {impl.name:12} {describe(check_verdicts(address, workload.cases))}", flush=True)
        if impl.kind == "ours" and config.batch_size:
            tally = check_verdicts(address, workload.cases, batch_size=config.batch_size)
            print(f"  {impl.name + ' batch':12} {describe(tally)}", flush=True)


def rerender(directory: Path) -> int:
    """Rewrite table.md and chart.png of an earlier run from its summary.json."""
    result = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    raw = result["config"]
    config = Config(**{**raw, "implementations": [Implementation(**impl) for impl in raw["implementations"]]})
    table = markdown(result["summary"], config, result["command"])
    (directory / "table.md").write_text(table, encoding="utf-8")
    ensure_plotting()
    draw_chart(result["summary"], config.rate, directory / "chart.png")
    print(table)
    return 0


def start_redis(config: Config, stack: contextlib.ExitStack) -> tuple[Config, RedisServer]:
    """Start the bench's redis-server; with ``--redis-tls`` its TLS port too, for the ``-tls`` variants."""
    tls = any(REDIS_TLS_URL_SLOT in impl.extra_env.values() for impl in config.implementations)
    redis_server = RedisServer(tls=tls).start()
    stack.callback(redis_server.close)
    if not tls:
        return config, redis_server
    implementations = [
        Implementation(
            i.name, i.kind, {k: redis_server.tls_url if v == REDIS_TLS_URL_SLOT else v for k, v in i.extra_env.items()}
        )
        for i in config.implementations
    ]
    return dataclasses.replace(config, implementations=implementations), redis_server


def start_mongo(config: Config, stack: contextlib.ExitStack) -> tuple[Config, int | None, Any]:
    """With ``--mongo``: start FerretDB, point the ``ours-mongo`` variant at it; its pid and sessions collection."""
    if not any(impl.name == MONGO_VARIANT for impl in config.implementations):
        return config, None, None
    mongo = FerretDBServer().start()
    stack.callback(mongo.close)
    client = stack.enter_context(mongo.client())
    config = dataclasses.replace(
        config,
        implementations=[
            Implementation(i.name, i.kind, {**i.extra_env, "SESSIONVALIDATOR_STORE_URL": mongo.url})
            if i.name == MONGO_VARIANT
            else i
            for i in config.implementations
        ],
    )
    assert mongo.proc is not None
    return config, mongo.proc.pid, client[mongo.database]["sessions"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark; 0 when no call failed."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--rerender"] and len(args) == 2:
        return rerender(Path(args[1]))
    if args[:1] == ["--gateway"]:  # bench/gateway.py: Envoy with and without ext_authz
        import gateway

        return int(gateway.main(args[1:]))
    config = parse_args(argv)
    command_line = shlex.join([".venv/bin/python", "bench/bench.py", *(sys.argv[1:] if argv is None else argv)])
    out = ROOT / "results" / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    out.mkdir(parents=True)
    (out / "command.txt").write_text(command_line + "\n", encoding="utf-8")
    print(f"results: {out.relative_to(ROOT)}", flush=True)
    ghz = ensure_ghz()
    ensure_plotting()
    commands = build_commands(config)
    code = code_version()  # before the servers start: what they will run
    background = wait_for_quiet(config.quiet_wait_s)
    print(f"other load on the machine before the bench: {background:.2f} cores", flush=True)
    started = time.monotonic()
    bench_secrets = [secrets.token_urlsafe(48) for _ in range(2)]  # current and previous: rotation
    with contextlib.ExitStack() as stack:
        config, redis_server = start_redis(config, stack)
        assert redis_server.proc is not None
        config, mongo_pid, mongo_sessions = start_mongo(config, stack)
        workload = build(
            redis_server.client(),
            bench_secrets,
            cookie_name=COOKIE_NAME,
            key_prefix=KEY_PREFIX,
            sessions=config.sessions,
            seed=config.seed,
            mongo_sessions=mongo_sessions,
        )
        files = write_files(out / "workload", workload, config.batch_size or 16)
        servers: dict[str, Server] = {}
        for impl in config.implementations:
            port = free_port()
            server = server_for(
                impl,
                commands[impl.name],
                redis_url=redis_server.url,
                secrets=bench_secrets,
                logs=out / "logs",
                port=port,
            )
            stack.callback(server.stop)
            servers[impl.name] = server.start(port=port)
            print(f"started {impl.name} on {server.address} (pid {server.pid}) {impl.extra_env or ''}", flush=True)
        sanity(servers, config, workload)
        # The store each variant reads: FerretDB for ours-mongo, else Redis.
        store_pids = {n: mongo_pid if n == MONGO_VARIANT and mongo_pid else redis_server.proc.pid for n in servers}
        targets = {
            name: Target(
                ghz,
                server,
                store_pids[name],
                SINGLE_CALL,
                files.single,
                1,
                descriptor_source(ghz, server.address, SINGLE_CALL),
            )
            for name, server in servers.items()
        }
        batch_targets = {
            impl.name: Target(
                ghz,
                servers[impl.name],
                store_pids[impl.name],
                BATCH_CALL,
                files.batch,
                config.batch_size,
                descriptor_source(ghz, servers[impl.name].address, BATCH_CALL),
            )
            for impl in (config.ours if config.batch_size else [])
        }
        descriptors = {name: "reflection" if not t.descriptor else "protoset" for name, t in targets.items()}
        runs = run_phases(config, targets, batch_targets, out)
    summary = summarize(runs)
    table = markdown(summary, config, command_line)
    result = {
        "command": command_line,
        "started_utc": out.name.removeprefix("bench-"),
        "elapsed_s": round(time.monotonic() - started, 1),
        "machine": {**machine_facts(), "background_load_cores_before": round(background, 2)},
        "code": code,
        "config": {**asdict(config), "implementations": [asdict(i) for i in config.implementations]},
        "workload": {
            "requests": len(workload.cases),
            "kinds": dict(workload.distribution()),
            "secrets": len(bench_secrets),
        },
        "summary": summary,
        "ratios": ratios(summary, config),
        "ghz_descriptor_source": descriptors,
        "runs": [asdict(run) for run in runs],
    }
    (out / "summary.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / "table.md").write_text(table, encoding="utf-8")
    draw_chart(summary, config.rate, out / "chart.png")
    print("\n" + table)
    print(f"saved: {out.relative_to(ROOT)}/ (summary.json, table.md, chart.png, ghz/, logs/)")
    errors = sum(run.errors for run in runs)
    if errors:
        print(f"FAILED: {errors} calls ended with a non-OK status; see ghz/*.json statusCodeDistribution")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
