"""`make run`'s script on this machine: it mints a working cookie and serves it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.support.processes import ROOT, RedisServer, free_port


@contextlib.contextmanager
def run_script_answer(store_env: dict[str, str]) -> Iterator[pb.ValidateSessionResponse]:
    """Run scripts/run.sh against a store; yield the service's answer to the cookie it prints, while it runs."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONVALIDATOR_")}
    env.update({"SESSIONVALIDATOR_LISTEN": f"127.0.0.1:{port}", **store_env})
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "run.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        cookie = None
        assert proc.stderr is not None
        while time.monotonic() < deadline and cookie is None:
            line = proc.stderr.readline().decode()
            match = re.match(r"\s+(connect\.sid=\S+)$", line)
            if match:
                cookie = match.group(1)
        assert cookie is not None, "run.sh printed no cookie"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            yield pb_grpc.SessionValidatorStub(channel).ValidateSession(
                pb.ValidateSessionRequest(cookie_header_text=cookie), timeout=5, wait_for_ready=True
            )
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_run_script_prints_a_cookie_the_service_accepts(redis_server: RedisServer) -> None:
    with run_script_answer({"SESSIONVALIDATOR_REDIS_URL": redis_server.url}) as response:
        assert response.verdict == pb.VERDICT_VALID
        assert response.user.id == "dev-user"
