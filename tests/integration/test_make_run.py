"""`make run`'s script on this machine: it mints a working cookie and serves it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
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


RUN_ENV = ROOT / ".tmp" / "run.env"


def test_run_script_prints_a_cookie_the_service_accepts(redis_server: RedisServer) -> None:
    with run_script_answer({"SESSIONVALIDATOR_REDIS_URL": redis_server.url}) as response:
        assert response.verdict == pb.VERDICT_VALID
        assert response.user.id == "dev-user"
        # What a second terminal reads: the store under its current name, the address, the secret's file.
        assert stat.S_IMODE(RUN_ENV.stat().st_mode) == 0o600
        settings = dict(line.split("=", 1) for line in RUN_ENV.read_text().splitlines() if not line.startswith("#"))
        assert settings["SESSIONVALIDATOR_STORE_URL"] == redis_server.url
        assert "SESSIONVALIDATOR_REDIS_URL" not in settings
        assert settings["SESSIONVALIDATOR_LISTEN"].startswith("127.0.0.1:")
        assert settings["SESSIONVALIDATOR_SECRETS_FILE"].endswith("/.tmp/dev-secret")
    assert not RUN_ENV.exists(), "run.sh left .tmp/run.env behind"


def run_script_refused(store_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONVALIDATOR_")}
    return subprocess.run(
        [str(ROOT / "scripts" / "run.sh")],
        env={**env, "SESSIONVALIDATOR_STORE_URL": store_url, "SESSIONVALIDATOR_LISTEN": f"127.0.0.1:{free_port()}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_script_says_why_it_starts_no_store_and_what_to_set() -> None:
    # A port something else holds (a listener that never answers): neither Redis nor MongoDB is started there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        for url, kind in ((f"redis://127.0.0.1:{port}/0", "Redis"), (f"mongodb://localhost:{port}/app", "MongoDB")):
            result = run_script_refused(url)
            assert result.returncode == 1, result
            assert f"something listens on {url.split('/')[2]} but does not answer as {kind} at {url}" in result.stderr
            assert "set SESSIONVALIDATOR_STORE_URL to a free port" in result.stderr
    # Credentials it could not honour: the password is never repeated.
    result = run_script_refused(f"redis://ann:hunter2-secret@127.0.0.1:{free_port()}/0")
    assert result.returncode == 1, result
    assert "redis://ann:***@127.0.0.1:" in result.stderr
    assert "credentials" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
