"""Prove the reference implementations pass the shared vectors, end to end.

    .venv/bin/python bench/reference/run_vectors.py [go] [node]

With no argument both references are checked. For each one it:

1. builds it (``go build`` / ``npm ci``);
2. starts a real redis-server on a free port and seeds it from
   tests/vectors/validate_session.json exactly as tests/harness.py does;
3. starts the reference with REF_* settings taken from the corpus's
   ``settings`` and waits for its ``{"event":"serving","port":N}`` line;
4. runs check_vectors.py against it (every case must pass);
5. checks grpc.health.v1 says SERVING; that a Redis that stops answering
   (CLIENT PAUSE) turns a lookup into UNAVAILABLE within the 100 ms store
   timeout, and that the reference recovers; and that a reference whose Redis
   is unreachable answers a lookup with UNAVAILABLE (and still answers a
   cookie that needs no lookup);
6. sends SIGTERM and requires exit status 0.

Everything it starts is stopped, by process id. Exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from sessionvalidator.v1 import session_validator_service_pb2 as pb  # noqa: E402
from sessionvalidator.v1 import session_validator_service_pb2_grpc  # noqa: E402
from tests.harness import seed  # noqa: E402
from tests.support.processes import LineReader, RedisServer, free_port  # noqa: E402

VECTORS = ROOT / "tests" / "vectors" / "validate_session.json"
CHECKER = HERE / "check_vectors.py"
SERVICE = "sessionvalidator.v1.SessionValidator"


def ref_env(settings: dict[str, str], redis_url: str) -> dict[str, str]:
    """REF_* variables from the corpus's SESSIONVALIDATOR_* settings."""
    secrets = settings["SESSIONVALIDATOR_SECRETS"]
    if not secrets.lstrip().startswith("["):
        secrets = json.dumps([secrets])  # a single plain secret
    env = {
        "REF_LISTEN": "127.0.0.1:0",
        "REF_REDIS_URL": redis_url,
        "REF_SECRETS": secrets,
        "REF_COOKIE_NAME": settings.get("SESSIONVALIDATOR_COOKIE_NAME", "connect.sid"),
        "REF_KEY_PREFIX": settings.get("SESSIONVALIDATOR_KEY_PREFIX", "sess:"),
    }
    if settings.get("SESSIONVALIDATOR_USER_KEY"):
        env["REF_USER_KEY"] = settings["SESSIONVALIDATOR_USER_KEY"]
    return env


def build_go(workdir: Path) -> list[str]:
    binary = workdir / "reference-go"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HERE / "go", check=True)
    return [str(binary)]


def build_node(_workdir: Path) -> list[str]:
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE / "node", check=True)
    return ["node", str(HERE / "node" / "server.js")]


BUILDERS: dict[str, Callable[[Path], list[str]]] = {"go": build_go, "node": build_node}


class Reference:
    """One running reference process."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.stdout = LineReader(self.proc.stdout)
        self.stderr = LineReader(self.proc.stderr)
        try:
            line = self.stdout.wait_for(lambda line: '"serving"' in line, timeout=30)
        except TimeoutError:
            self.kill()
            raise RuntimeError("no serving line; stderr:\n" + "\n".join(self.stderr.lines[-20:])) from None
        event = json.loads(line)
        if set(event) != {"event", "port"} or event["event"] != "serving" or not isinstance(event["port"], int):
            self.kill()
            raise RuntimeError(f"unexpected serving line: {line!r}")
        self.address = f"127.0.0.1:{event['port']}"

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return -999
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[Reference]:
    ref = Reference(command, env)
    try:
        yield ref
    finally:
        ref.kill()


def first_case(corpus: dict[str, Any], name: str) -> dict[str, Any]:
    return next(case for case in corpus["cases"] if case["name"] == name)


def check_health(address: str) -> list[str]:
    problems = []
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            if status != health_pb2.HealthCheckResponse.SERVING:
                problems.append(f"health {service!r}: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")
    return problems


def check_store_down(address: str, corpus: dict[str, Any]) -> list[str]:
    """A store lookup fails with UNAVAILABLE; a cookie needing no lookup is still judged."""
    problems = []
    valid = first_case(corpus, "valid_scalar_user")["request"]["cookie_header_text"]
    with grpc.insecure_channel(address) as channel:
        stub = session_validator_service_pb2_grpc.SessionValidatorStub(channel)
        try:
            response = stub.ValidateSession(pb.ValidateSessionRequest(cookie_header_text=valid), timeout=5)
            problems.append(f"store down: expected UNAVAILABLE, got {pb.Verdict.Name(response.verdict)}")
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                problems.append(f"store down: expected UNAVAILABLE, got {exc.code().name}")
        response = stub.ValidateSession(
            pb.ValidateSessionRequest(cookie_header_text="connect.sid=not-signed"), timeout=5
        )
        if response.reason != pb.REASON_NOT_SIGNED:
            problems.append(f"store down: unsigned cookie gave {pb.Reason.Name(response.reason)}")
    return problems


def check_store_timeout(address: str, corpus: dict[str, Any], redis_server: RedisServer) -> list[str]:
    """A Redis that hangs gives UNAVAILABLE after about 100 ms; service resumes after."""
    problems = []
    valid = pb.ValidateSessionRequest(
        cookie_header_text=first_case(corpus, "valid_scalar_user")["request"]["cookie_header_text"]
    )
    pause_ms = 800
    with grpc.insecure_channel(address) as channel:
        stub = session_validator_service_pb2_grpc.SessionValidatorStub(channel)
        stub.ValidateSession(valid, timeout=5)  # warm: connections are open
        redis_server.client().client_pause(pause_ms, all=True)
        paused_at = time.monotonic()
        try:
            response = stub.ValidateSession(valid, timeout=5)
            problems.append(f"store hung: expected UNAVAILABLE, got {pb.Verdict.Name(response.verdict)}")
        except grpc.RpcError as exc:
            elapsed_ms = (time.monotonic() - paused_at) * 1000
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                problems.append(f"store hung: expected UNAVAILABLE, got {exc.code().name}")
            elif elapsed_ms > pause_ms * 0.6:
                problems.append(f"store hung: UNAVAILABLE only after {elapsed_ms:.0f} ms (timeout is 100 ms)")
        time.sleep(max(0.0, pause_ms / 1000 - (time.monotonic() - paused_at)) + 0.3)
        deadline = time.monotonic() + 5
        while True:  # recovered: the next calls are judged again
            try:
                response = stub.ValidateSession(valid, timeout=5)
                if response.verdict != pb.VERDICT_VALID:
                    problems.append(f"after the pause: {pb.Verdict.Name(response.verdict)}")
                break
            except grpc.RpcError as exc:
                if time.monotonic() > deadline:
                    problems.append(f"after the pause: still {exc.code().name}")
                    break
                time.sleep(0.1)
    return problems


def run_one(name: str, command: list[str], corpus: dict[str, Any], redis_server: RedisServer) -> list[str]:
    problems: list[str] = []
    env = ref_env(corpus["settings"], redis_server.url)
    print(f"--- {name}: vectors", flush=True)
    with running(command, env) as ref:
        result = subprocess.run([sys.executable, str(CHECKER), ref.address, str(VECTORS)], check=False)
        if result.returncode != 0:
            problems.append(f"check_vectors exited {result.returncode}")
        problems += check_health(ref.address)
        print(f"--- {name}: store hangs", flush=True)
        problems += check_store_timeout(ref.address, corpus, redis_server)
        status = ref.terminate()
        if status != 0:
            problems.append(f"exit status after SIGTERM: {status}")
    print(f"--- {name}: store unreachable", flush=True)
    down_env = {**env, "REF_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with running(command, down_env) as ref:
        problems += check_store_down(ref.address, corpus)
        status = ref.terminate()
        if status != 0:
            problems.append(f"exit status after SIGTERM (store down): {status}")
    return problems


def main(argv: list[str]) -> int:
    names = argv or list(BUILDERS)
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        print(__doc__, file=sys.stderr)
        return 2
    corpus = json.loads(VECTORS.read_text(encoding="utf-8"))
    workdir = Path(tempfile.mkdtemp(prefix="sv-ref-"))
    failures: dict[str, list[str]] = {}
    redis_server = RedisServer().start()
    try:
        seed(redis_server, corpus)
        for name in names:
            started = time.monotonic()
            try:
                command = BUILDERS[name](workdir)
                failures[name] = run_one(name, command, corpus, redis_server)
            except (subprocess.CalledProcessError, RuntimeError, grpc.RpcError, OSError) as exc:
                failures[name] = [f"{exc.__class__.__name__}: {exc}"]
            verdict = "FAIL" if failures[name] else "ok"
            print(f"--- {name}: {verdict} ({time.monotonic() - started:.1f}s)", flush=True)
            for problem in failures[name]:
                print(f"    {problem}")
    finally:
        redis_server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [n for n, p in failures.items() if p]
    print(f"references: {len(names) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
