"""The pinned ghz load generator: install it, run it, read its JSON report.

    .venv/bin/python bench/ghz.py      # install ghz (and the HTML renderer) if missing; print their paths

ghz is installed with ``go install`` into ``.tmp/bin`` and renamed
``ghz-<version>``, so bumping :data:`GHZ_VERSION` reinstalls it. Keep the
version in ``bench/ghzhtml/go.mod`` equal to it (checked here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

GHZ_VERSION = "v0.121.0"  # newest stable tag (2025-12-07); bump deliberately
ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".tmp" / "bin"
HTML_SOURCE = ROOT / "bench" / "ghzhtml"
PROTO = ROOT / "proto" / "sessionvalidator" / "v1" / "session_validator_service.proto"
PROTOSET = ROOT / ".tmp" / "bench" / "sessionvalidator.protoset"
SINGLE_CALL = "sessionvalidator.v1.SessionValidator/ValidateSession"
BATCH_CALL = "sessionvalidator.v1.SessionValidator/ValidateSessions"


def ensure_ghz() -> Path:
    """Return the pinned ghz binary, installing it from the Go module proxy if missing."""
    binary = BIN / f"ghz-{GHZ_VERSION}"
    if not binary.exists():
        BIN.mkdir(parents=True, exist_ok=True)
        print(f"installing ghz {GHZ_VERSION} (go install) ...", file=sys.stderr, flush=True)
        subprocess.run(
            ["go", "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"],
            env={**os.environ, "GOBIN": str(BIN)},
            cwd=ROOT,
            check=True,
        )
        (BIN / "ghz").rename(binary)
    return binary


def ensure_ghz_html() -> Path:
    """Return the JSON-to-HTML report renderer (bench/ghzhtml), building it when stale."""
    if f"github.com/bojand/ghz {GHZ_VERSION}" not in (HTML_SOURCE / "go.mod").read_text(encoding="utf-8"):
        msg = f"bench/ghzhtml/go.mod must require github.com/bojand/ghz {GHZ_VERSION} (run go get there)"
        raise RuntimeError(msg)
    binary = BIN / f"ghzhtml-{GHZ_VERSION}"
    sources = [HTML_SOURCE / name for name in ("main.go", "go.mod", "go.sum")]
    if not binary.exists() or any(s.stat().st_mtime > binary.stat().st_mtime for s in sources):
        BIN.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HTML_SOURCE, check=True)
    return binary


def ensure_protoset() -> Path:
    """Compile proto/ into a descriptor set (grpc_tools.protoc), for servers whose reflection ghz cannot use."""
    if not PROTOSET.exists() or PROTOSET.stat().st_mtime < PROTO.stat().st_mtime:
        PROTOSET.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", "--include_imports"]
        subprocess.run([*command, f"--descriptor_set_out={PROTOSET}", str(PROTO)], check=True)
    return PROTOSET


def descriptor_source(ghz: Path, address: str, call: str) -> tuple[str, ...]:
    """Return the ghz flags that describe ``call``: none (server reflection) when the server's reflection works.

    Two reflection services in this bench do not satisfy ghz: grpcio's (Python,
    upb) cannot resolve the *method* symbol ghz asks for (grpc/grpc#34743,
    "Symbol not found"), and @grpc/reflection over proto-loader does not serve
    google/protobuf/timestamp.proto. For those, and only those, ghz is given
    the contract compiled by protoc (--protoset); the probe call proves it works.
    """

    def probe(*flags: str) -> subprocess.CompletedProcess[str]:
        command = [str(ghz), *flags, "--insecure", "--call", call, "-d", "{}", "-n", "1", "-c", "1", address]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    reflection = probe()
    if reflection.returncode == 0:
        return ()
    fallback = ("--protoset", str(ensure_protoset()))
    if probe(*fallback).returncode != 0:
        msg = f"ghz cannot call {call} on {address}: {reflection.stderr.strip()}"
        raise RuntimeError(msg)
    reason = (reflection.stderr.strip().splitlines() or ["?"])[-1]
    print(f"warning: {address}: ghz cannot use its server reflection ({reason}); using --protoset", file=sys.stderr)
    return fallback


@dataclass(frozen=True, slots=True)
class LoadShape:
    """How ghz drives the server. ``rps`` 0 is closed loop (as fast as it goes)."""

    duration_s: float
    concurrency: int = 50
    connections: int = 4
    rps: int = 0
    cpus: int = 1
    skip_first: int = 0


def ghz_command(
    ghz: Path,
    address: str,
    call: str,
    data_file: Path,
    *,
    shape: LoadShape,
    output: Path,
    descriptor: Sequence[str] = (),
) -> list[str]:
    """Return the ghz command line: server reflection unless ``descriptor`` says otherwise; JSON to ``output``."""
    command = [
        str(ghz),
        *descriptor,
        "--insecure",
        "--call",
        call,
        "--data-file",
        str(data_file),
        # The cookies are data, not templates; this also saves ghz CPU.
        "--disable-template-data",
        "--disable-template-functions",
        "--concurrency",
        str(shape.concurrency),
        "--connections",
        str(shape.connections),
        "--duration",
        f"{shape.duration_s:g}s",
        # The default, close, cuts the connections at the deadline and reports the calls then in
        # flight as Unavailable ("use of closed network connection"): up to -c false errors a run.
        "--duration-stop",
        "wait",
        "--cpus",
        str(shape.cpus),
        "--format",
        "json",
        "--output",
        str(output),
    ]
    if shape.rps:
        command += ["--rps", str(shape.rps)]
    if shape.skip_first:
        command += ["--skipFirst", str(shape.skip_first)]
    return [*command, address]


def run_ghz(command: list[str]) -> None:
    """Run ghz; raise with its own message when it fails (it exits 0 even when calls fail)."""
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        msg = f"ghz exited {result.returncode}: {result.stderr.decode(errors='replace').strip()}"
        raise RuntimeError(msg)


@dataclass(frozen=True, slots=True)
class GhzSummary:
    """The figures that matter from a ghz JSON report (latencies count OK responses only)."""

    count: int
    total_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    statuses: dict[str, int]
    window_rps: float  # counted calls / their own time span: leaves --skipFirst's warm-up out (ghz's rps does not)

    @property
    def errors(self) -> int:
        """Calls that ended with any status but OK (verdicts travel in OK responses)."""
        return sum(n for status, n in self.statuses.items() if status != "OK")

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> GhzSummary:
        """Read a parsed ghz JSON report (durations are nanoseconds)."""
        percentiles = {p["percentage"]: p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
        details = report.get("details") or []
        window_rps = float(report["rps"])
        if len(details) > 1:
            first, last = (datetime.fromisoformat(details[i]["timestamp"]) for i in (0, -1))
            if (span := (last - first).total_seconds()) > 0:
                window_rps = (len(details) - 1) / span
        return cls(
            count=int(report["count"]),
            total_s=report["total"] / 1e9,
            rps=float(report["rps"]),
            p50_ms=percentiles.get(50, float("nan")),
            p90_ms=percentiles.get(90, float("nan")),
            p99_ms=percentiles.get(99, float("nan")),
            statuses=dict(report.get("statusCodeDistribution") or {}),
            window_rps=window_rps,
        )

    def describe(self) -> str:
        """One human line, status code distribution included."""
        statuses = ", ".join(f"{status} {n}" for status, n in sorted(self.statuses.items())) or "none"
        return (
            f"{self.window_rps:,.0f} req/s after warm-up ({self.rps:,.0f} by ghz, over all {self.total_s:.1f} s); "
            f"{self.count:,} calls counted; "
            f"p50 {self.p50_ms:.2f} ms, p90 {self.p90_ms:.2f} ms, p99 {self.p99_ms:.2f} ms; status codes: {statuses}"
        )


def main() -> int:
    """Install what is missing and print the paths."""
    print(ensure_ghz())
    print(ensure_ghz_html())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
