"""SESSIONVALIDATOR_WORKERS: several processes share the port, drain together, and fail together."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.integration.conftest import CORPUS
from tests.support.processes import RedisServer, ValidatorProcess, free_port
from tests.support.vectors import request_of


def start(redis_server: RedisServer, workers: int) -> tuple[ValidatorProcess, int]:
    port = free_port()
    env = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_WORKERS": str(workers),
        "SESSIONVALIDATOR_LISTEN": f"127.0.0.1:{port}",
        "SESSIONVALIDATOR_SHUTDOWN_GRACE_S": "2",
    }
    validator = ValidatorProcess(env).start()
    assert validator.port == port
    assert validator.output is not None
    deadline = time.monotonic() + 30
    while len(serving_pids(validator, port)) < workers:  # every worker reports its own "serving"
        assert time.monotonic() < deadline, "the workers did not all start"
        time.sleep(0.05)
    return validator, port


def serving_pids(validator: ValidatorProcess, port: int) -> set[int]:
    assert validator.output is not None
    return {r["pid"] for r in validator.output.json_lines() if r.get("event") == "serving" and r.get("port") == port}


def test_workers_share_the_port_and_all_answer(redis_server: RedisServer) -> None:
    validator, port = start(redis_server, 2)
    try:
        time.sleep(0.5)
        assert len(serving_pids(validator, port)) == 2
        case = next(c for c in CORPUS["cases"] if c["name"] == "missing_unknown_session")
        # Each new connection lands on one worker; many connections reach both.
        for _ in range(8):
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                response = pb_grpc.SessionValidatorStub(ch).ValidateSession(request_of(case), timeout=5)
                assert response.verdict == pb.VERDICT_MISSING
        assert validator.terminate(timeout=20) == 0
    finally:
        validator.close()


def test_a_dead_worker_stops_the_whole_unit(redis_server: RedisServer) -> None:
    validator, port = start(redis_server, 2)
    try:
        time.sleep(0.5)
        victim = min(serving_pids(validator, port))
        os.kill(victim, signal.SIGKILL)
        assert validator.proc is not None
        assert validator.proc.wait(timeout=30) == 1
    finally:
        validator.close()


def test_workers_stop_when_the_supervisor_is_killed(redis_server: RedisServer) -> None:
    validator, port = start(redis_server, 2)
    try:
        workers = serving_pids(validator, port)
        assert validator.proc is not None
        validator.proc.kill()  # SIGKILL: the supervisor cannot forward anything
        validator.proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(running(pid) for pid in workers):
            assert time.monotonic() < deadline, "orphaned workers went on serving"
            time.sleep(0.2)
    finally:
        validator.close()


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
