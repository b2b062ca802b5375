"""Real processes for tests: redis-server, FerretDB, the SessionValidator service, the Express app.

Nothing here is a mock. Each helper starts the real program on a free
loopback port, waits until it answers, and stops it (and only it) afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pymongo
import pymongo.errors
import redis

from sessionvalidator_service.serverkind import KINDS, ServerKind
from tests.support.certs import make_ca, make_leaf

ROOT = Path(__file__).resolve().parents[2]
PARITY_DIR = ROOT / "tests" / "parity"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    msg = f"timed out waiting for {what}"
    raise TimeoutError(msg)


def debug_sleep(client: redis.Redis, seconds: float) -> None:
    """Hold ``client``'s Redis busy for ``seconds`` (DEBUG SLEEP; RedisServer enables the DEBUG command)."""
    client.execute_command("DEBUG", "SLEEP", f"{seconds:g}")  # type: ignore[no-untyped-call]  # unannotated in redis-py


@dataclass(frozen=True)
class RedisTls:
    """What a TLS redis-server serves: its certificate and key, the CA its clients' certificates must chain to."""

    cert: Path
    key: Path
    ca: Path
    auth_clients: bool = False  # --tls-auth-clients: mutual TLS

    @classmethod
    def made_in(cls, directory: Path, *, auth_clients: bool = False) -> RedisTls:
        """A new CA in ``directory`` and a certificate it signs for localhost and 127.0.0.1 (server and node)."""
        ca = make_ca(directory, "redis-ca")
        server = make_leaf(directory, "redis", ca, server=True, client_too=True)
        return cls(server.cert, server.key, ca.cert, auth_clients=auth_clients)

    def args(self, port: int) -> tuple[str, ...]:
        return (
            *("--tls-port", str(port), "--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key)),
            *("--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "yes" if self.auth_clients else "no"),
        )


class RedisServer:
    """A redis-server process with no persistence, on a port of its own.

    With ``tls`` it also listens for TLS on ``tls_port`` (``tls_url``); the
    plain port stays open for seeding and inspection (:meth:`client`).
    """

    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = (), tls: RedisTls | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            msg = "redis-server is not installed (make test-deps installs it)"
            raise RuntimeError(msg)
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="sv-redis-")
        self.extra_args = extra_args
        self.tls = tls
        self.tls_port = free_port() if tls is not None else 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def tls_url(self, host: str = "localhost", userinfo: str = "", **params: str) -> str:
        """A ``rediss://`` URL for the TLS port, ``ssl_ca_certs`` the server's CA unless ``params`` say otherwise."""
        assert self.tls is not None, "a RedisServer started without tls"
        query = "&".join(f"{name}={value}" for name, value in {"ssl_ca_certs": str(self.tls.ca), **params}.items())
        return f"rediss://{userinfo + '@' if userinfo else ''}{host}:{self.tls_port}/0?{query}"

    @property
    def store_url(self) -> str:
        """What the service under test reads: the TLS port when there is one."""
        return self.tls_url() if self.tls is not None else self.url

    @property
    def store_port(self) -> int:
        """The port of :attr:`store_url`."""
        return self.tls_port or self.port

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--protected-mode",
                "no",
                "--enable-debug-command",
                "yes",
                *(self.tls.args(self.tls_port) if self.tls is not None else ()),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._answers, f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            msg = f"redis-server exited with {self.proc.returncode}"
            raise RuntimeError(msg)
        try:
            return bool(self.client().ping())
        except redis.exceptions.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def ferretdb_binary() -> str:
    """The pinned FerretDB binary, built on first use (scripts/build-ferretdb.sh, `make ferretdb`)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-ferretdb.sh")], check=True, capture_output=True, text=True, timeout=1800
    )
    return out.stdout.strip().splitlines()[-1]


class FerretDBServer:
    """A real MongoDB wire-protocol server: FerretDB with its SQLite backend, on a port of its own.

    The SQLite backend implements no TTL index, so Express apps against it use
    connect-mongo's ``autoRemove: 'interval'`` or ``'disabled'``.
    """

    def __init__(self, port: int | None = None, database: str = "sv") -> None:
        self.binary = ferretdb_binary()
        self.port = port or free_port()
        self.database = database
        self.dir = tempfile.mkdtemp(prefix="sv-ferretdb-")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{self.database}"

    def start(self) -> FerretDBServer:
        data = Path(self.dir) / "data"
        data.mkdir(exist_ok=True)
        self._log = (Path(self.dir) / "ferretdb.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--handler=sqlite",
                f"--sqlite-url=file:{data}/",
                f"--state-dir={self.dir}",
                f"--listen-addr=127.0.0.1:{self.port}",
                "--debug-addr=-",
                "--telemetry=disable",
                "--log-level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _wait(self._answers, f"FerretDB on port {self.port}", timeout=30)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (Path(self.dir) / "ferretdb.log").read_text(errors="replace")[-2000:]
            msg = f"FerretDB exited with {self.proc.returncode}: {log}"
            raise RuntimeError(msg)
        try:
            with self.client(timeout_ms=500) as client:
                client.admin.command("ping")
        except pymongo.errors.PyMongoError:
            return False
        return True

    def client(self, timeout_ms: int = 5000) -> pymongo.MongoClient[dict[str, Any]]:
        """A blocking client for seeding and inspection (close it, or use it in ``with``)."""
        return pymongo.MongoClient(
            self.url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True
        )

    def pause(self) -> None:
        """SIGSTOP it (a hung server: connections stay open, nothing answers) and wait until every thread stopped."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.proc.pid}/task")

        def stopped() -> bool:
            states = []
            for task in tasks.iterdir():
                with contextlib.suppress(OSError):
                    states.append(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0])
            return bool(states) and all(state in {"T", "t"} for state in states)

        _wait(stopped, "FerretDB to stop", timeout=5)

    def resume(self) -> None:
        """SIGCONT it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class LineReader:
    """Collects a process's stdout lines on a thread, so nothing blocks on a full pipe."""

    stream: IO[bytes]
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for raw in self.stream:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = "timed out; output so far:\n" + "\n".join(self.lines[-30:])
                    raise TimeoutError(msg)
                self._cond.wait(remaining)

    def json_lines(self) -> list[dict[str, Any]]:
        with self._cond:
            lines = list(self.lines)
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def server_kind_env() -> dict[str, str]:
    """``SESSIONVALIDATOR_SERVER`` for the server kind under test (``SESSIONVALIDATOR_TEST_SERVER``, default grpcio).

    ``make test-native`` runs the service's suites again with the native server.
    """
    kind = os.environ.get("SESSIONVALIDATOR_TEST_SERVER")
    return {"SESSIONVALIDATOR_SERVER": kind} if kind else {}


def server_kind() -> ServerKind:
    """The server kind under test."""
    return KINDS[os.environ.get("SESSIONVALIDATOR_TEST_SERVER") or "grpcio"]


class ValidatorProcess:
    """``python -m sessionvalidator_service serve`` on 127.0.0.1:0."""

    def __init__(self, env: Mapping[str, str]) -> None:
        # No shutdown delay unless a test asks for one: SIGTERM goes straight to draining.
        self.env = {
            **os.environ,
            "SESSIONVALIDATOR_LISTEN": "127.0.0.1:0",
            "SESSIONVALIDATOR_SHUTDOWN_DELAY_MS": "0",
            **server_kind_env(),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.output: LineReader | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ValidatorProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sessionvalidator_service", "serve"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        self.output = LineReader(self.proc.stdout)
        line = self.output.wait_for(lambda line: '"event": "serving"' in line or "error" in line.lower())
        record = json.loads(line)
        if record.get("event") != "serving":
            msg = f"validator failed to start: {line}"
            raise RuntimeError(msg)
        self.port = int(record["port"])
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until readiness is SERVING (the first store ping succeeded)."""
        assert self.output is not None
        self.output.wait_for(lambda line: '"serving": true' in line, timeout=timeout)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def running_validator(env: Mapping[str, str], *, ready: bool = True) -> Iterator[ValidatorProcess]:
    validator = ValidatorProcess(env).start()
    try:
        if ready:
            validator.wait_ready()
        yield validator
    finally:
        validator.close()


class ExpressApp:
    """The parity app (tests/parity/app.js): real express-session + connect-redis + Passport."""

    def __init__(self, redis_url: str, secrets: list[str], *, cookie_name: str = "connect.sid", **env: str) -> None:
        if not (PARITY_DIR / "node_modules").is_dir():
            msg = "tests/parity/node_modules is missing: run `make node-deps`"
            raise RuntimeError(msg)
        self.env = {
            **os.environ,
            "PARITY_REDIS_URL": redis_url,
            "PARITY_SECRETS": json.dumps(secrets),
            "PARITY_COOKIE_NAME": cookie_name,
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> ExpressApp:
        self.proc = subprocess.Popen(
            ["node", "app.js"], cwd=PARITY_DIR, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            msg = f"parity app did not start: {err}"
            raise RuntimeError(msg)
        self.port = int(json.loads(line)["port"])
        return self

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
