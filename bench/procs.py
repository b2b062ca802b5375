"""Servers under test and what they cost: CPU and memory of a whole process tree, from /proc.

It also starts the benchmark's own redis-server (:class:`RedisServer`) and, for
``--mongo``, FerretDB (:class:`FerretDBServer`): bench/ stands alone and
imports nothing from tests/.

A server may be several processes (our service with SESSIONVALIDATOR_WORKERS
forks workers), so every figure covers the root process and all its
descendants: CPU is the utime+stime delta of every process in the tree, memory
the peak of the summed VmRSS, sampled every 200 ms (VmHWM is per process, so
it cannot give the tree's peak; it does give the largest single process).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server with no persistence on a free loopback port, in a temporary directory.

    With ``tls`` it also listens for TLS (``tls_url``) with a self-signed
    certificate for localhost made by the openssl CLI, the plain port staying
    for seeding.
    """

    def __init__(self, *, tls: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            msg = "redis-server is not installed (make bench-deps installs it)"
            raise RuntimeError(msg)
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sv-bench-redis-")
        self.tls_port = free_port() if tls else 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def tls_url(self) -> str:
        """The TLS port, verifying the server's certificate and host name (redis-py's defaults)."""
        return f"rediss://localhost:{self.tls_port}/0?ssl_ca_certs={Path(self.dir) / 'tls.crt'}"

    def _tls_options(self) -> list[str]:
        if not self.tls_port:
            return []
        cert, key = Path(self.dir) / "tls.crt", Path(self.dir) / "tls.key"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
                *("-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                *("-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return [
            *("--tls-port", str(self.tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)),
            *("--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"),
        ]

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self, timeout: float = 15.0) -> RedisServer:
        """Start it and wait until it answers PING."""
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        options += self._tls_options()
        self.proc = subprocess.Popen(
            [self.binary, *options, "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"redis-server exited with {self.proc.returncode}"
                raise RuntimeError(msg)
            with contextlib.suppress(redis.exceptions.ConnectionError):
                if self.client().ping():
                    return self
            time.sleep(0.02)
        self.close()
        msg = f"redis-server on port {self.port} did not answer within {timeout} s"
        raise TimeoutError(msg)

    def close(self) -> None:
        """Stop it (only it) and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class FerretDBServer:
    """FerretDB (MongoDB wire protocol over SQLite; scripts/build-ferretdb.sh) on a free loopback port."""

    def __init__(self, database: str = "sv") -> None:
        root = Path(__file__).resolve().parents[1]
        built = subprocess.run(
            [str(root / "scripts" / "build-ferretdb.sh")], check=True, capture_output=True, text=True, timeout=1800
        )
        self.binary = built.stdout.strip().splitlines()[-1]
        self.port = free_port()
        self.database = database
        self.dir = tempfile.mkdtemp(prefix="sv-bench-ferretdb-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{self.database}"

    def client(self) -> Any:
        """A blocking pymongo client (close it, or use it in ``with``)."""
        import pymongo

        return pymongo.MongoClient(self.url, serverSelectionTimeoutMS=5000, tz_aware=True)

    def start(self, timeout: float = 30.0) -> FerretDBServer:
        """Start it and wait until it answers ping."""
        import pymongo.errors

        options = [
            "--handler=sqlite",
            f"--sqlite-url=file:{self.dir}/",
            f"--state-dir={self.dir}",
            f"--listen-addr=127.0.0.1:{self.port}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
        ]
        self.proc = subprocess.Popen([self.binary, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"FerretDB exited with {self.proc.returncode}"
                raise RuntimeError(msg)
            with contextlib.suppress(pymongo.errors.PyMongoError), self.client() as client:
                client.admin.command("ping")
                return self
            time.sleep(0.05)
        self.close()
        msg = f"FerretDB on port {self.port} did not answer within {timeout} s"
        raise TimeoutError(msg)

    def close(self) -> None:
        """Stop it (only it) and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 (state) on; the command name may hold spaces."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime+stime of each process (all its threads), in seconds."""
    usage = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = _stat_fields(pid)
            usage[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return usage


def thread_cpu_seconds(pids: list[int]) -> dict[str, float]:
    """utime+stime per thread, keyed ``pid/tid name`` (the split that top -H shows)."""
    usage = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, IndexError, ValueError):
                    text = Path(task.path, "stat").read_text(encoding="ascii", errors="replace")
                    name = text[text.index("(") + 1 : text.rindex(")")]
                    fields = text[text.rindex(")") + 2 :].split()
                    usage[f"{pid}/{task.name} {name}"] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return usage


def rss_bytes(pid: int) -> int:
    """Resident set size now (VmRSS), 0 when the process is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text(encoding="ascii").split()[1]) * PAGE_SIZE
    except (OSError, IndexError):
        return 0


def hwm_bytes(pid: int) -> int:
    """Return the process's own peak resident set size (VmHWM), 0 when unknown."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True, slots=True)
class HostCpu:
    """Seconds the whole machine spent so far (from /proc/stat), summed over its cores."""

    busy: float  # everything but idle, iowait and steal
    irq: float  # interrupts and softirqs (loopback networking), charged to no process
    steal: float

    def __sub__(self, other: HostCpu) -> HostCpu:
        return HostCpu(self.busy - other.busy, self.irq - other.irq, self.steal - other.steal)


def host_cpu() -> HostCpu:
    """Read the machine's CPU counters."""
    values = [int(v) for v in Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return HostCpu(
        (user + nice + system + irq + softirq) / CLOCK_TICKS, (irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS
    )


def background_load(window_s: float = 2.0) -> float:
    """Busy cores of the whole machine over ``window_s`` (before our servers start: other people's load)."""
    before = host_cpu()
    time.sleep(window_s)
    return (host_cpu() - before).busy / window_s


def wait_for_quiet(max_wait_s: float, threshold_cores: float = 0.25) -> float:
    """Wait (up to ``max_wait_s``) until the machine idles below ``threshold_cores``; return the last load seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        load = background_load()
        if load < threshold_cores or time.monotonic() >= deadline:
            return load
        print(f"the machine is busy ({load:.2f} cores used by others); waiting for it to quiet down ...", flush=True)
        time.sleep(5.0)


@dataclass(frozen=True, slots=True)
class TreeUsage:
    """What a process tree used over a window."""

    cpu_s: float
    cpu_by_pid: dict[int, float]
    cpu_by_thread: dict[str, float]  # the busiest threads
    peak_rss_bytes: int
    peak_process_bytes: int
    processes: int


@dataclass
class TreeMonitor:
    """Measures a process tree between :meth:`start` and :meth:`stop` (a sampling thread for memory)."""

    root: int
    interval_s: float = 0.2
    _start: dict[int, float] = field(default_factory=dict)
    _threads: dict[str, float] = field(default_factory=dict)
    _peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeMonitor:
        """Take the starting CPU snapshot and start sampling memory."""
        pids = process_tree(self.root)
        self._start = cpu_seconds(pids)
        self._threads = thread_cpu_seconds(pids)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self._peak = max(self._peak, sum(rss_bytes(pid) for pid in process_tree(self.root)))
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> TreeUsage:
        """Stop sampling and return what the tree used since :meth:`start`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        pids = process_tree(self.root)
        end = cpu_seconds(pids)
        delta = {pid: end[pid] - self._start.get(pid, 0.0) for pid in end}
        threads = {t: s - self._threads.get(t, 0.0) for t, s in thread_cpu_seconds(pids).items()}
        busiest = dict(sorted(threads.items(), key=lambda item: -item[1])[:6])
        return TreeUsage(
            cpu_s=sum(delta.values()),
            cpu_by_pid=delta,
            cpu_by_thread={t: round(s, 2) for t, s in busiest.items() if s > 0},
            peak_rss_bytes=self._peak,
            peak_process_bytes=max((hwm_bytes(pid) for pid in pids), default=0),
            processes=len(pids),
        )


def _health_serving(address: str) -> bool:
    """Whether grpc.health.v1 Check (the server as a whole) says SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class Server:
    """One server under test: started in its own session, its output in a log file, stopped by pid."""

    name: str
    command: list[str]
    env: Mapping[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def address(self) -> str:
        """Where clients dial it."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The root process id."""
        if self.proc is None:
            msg = f"{self.name} is not running"
            raise RuntimeError(msg)
        return self.proc.pid

    def start(self, timeout_s: float = 60.0, *, port: int = 0) -> Server:
        """Start and wait for ``{"event": "serving", "port": N}`` (for every worker, when it says how many).

        With a known ``port``, a server that logs nothing (a quiet log level)
        is ready once grpc.health.v1 answers SERVING there.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the bench, which then stops us in order
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
                raise RuntimeError(msg)
            events = self._events()
            serving = [e for e in events if e.get("event") == "serving" and "port" in e]
            workers = max((int(e.get("workers", 1)) for e in events if e.get("event") == "workers"), default=1)
            if len(serving) >= workers:
                self.port = int(serving[0]["port"])
                return self
            if port and not events and _health_serving(f"127.0.0.1:{port}"):
                self.port = port
                return self
            time.sleep(0.05)
        msg = f"{self.name} did not log a serving line within {timeout_s:.0f} s; see {self.log_path}"
        raise TimeoutError(msg)

    def _events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM (graceful), then SIGKILL to whatever is left of the server's own process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        # Started in its own session, so its process group id is its pid: it and its workers only.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
