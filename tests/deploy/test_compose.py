"""compose.yaml started with podman-compose: both services healthy, a call answered through the published port."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.deploy.podman import ENV, IMAGE, REDIS_IMAGE, podman, unique_name
from tests.support.processes import ROOT, free_port


class Stack:
    def __init__(self, project: str, port: int) -> None:
        self.project = project
        self.port = port

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"


def compose(project: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # The output echoes the environment (the secret): kept, shown only on failure.
    return subprocess.run(
        ["podman-compose", "--project-name", project, "--file", str(ROOT / "compose.yaml"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    project = unique_name("svcompose").replace("-", "")
    port = free_port()
    env = {
        **ENV,
        "REDIS_IMAGE": REDIS_IMAGE,
        "SESSIONVALIDATOR_IMAGE": IMAGE,
        "SESSIONVALIDATOR_SECRETS": secrets.token_urlsafe(32),
        "SESSIONVALIDATOR_PORT": str(port),
    }
    env.pop("PYTHON_IMAGE", None)
    up = compose(project, env, "up", "--detach")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield Stack(project, port)
    finally:
        down = compose(project, env, "down")
        podman("network", "rm", "--force", f"{project}_default", check=False)
        assert down.returncode == 0, down.stdout + down.stderr


def wait_healthy(container: str, timeout: float = 30) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if podman("healthcheck", "run", container, check=False).returncode == 0:
            return time.monotonic() - start
        time.sleep(0.25)
    logs = podman("logs", container, check=False)
    msg = f"{container} not healthy within {timeout}s:\n{logs.stdout}{logs.stderr}"
    raise AssertionError(msg)


def test_services_become_healthy_and_answer(stack: Stack) -> None:
    wait_healthy(stack.container("redis"))
    wait_healthy(stack.container("sessionvalidator"))
    inspect = json.loads(podman("inspect", stack.container("sessionvalidator")).stdout)[0]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True

    minted = podman("exec", stack.container("sessionvalidator"), "sessionvalidator", "mint", "--json").stdout
    session = json.loads(minted.splitlines()[0])
    with grpc.insecure_channel(f"127.0.0.1:{stack.port}") as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        response = stub.ValidateSession(pb.ValidateSessionRequest(cookie_header_text=session["cookie"]), timeout=5)
    assert response.verdict == pb.VERDICT_VALID
    assert response.session_id == session["session_id"]


def test_the_secret_is_required() -> None:
    env = {k: v for k, v in ENV.items() if k != "SESSIONVALIDATOR_SECRETS"}
    result = podman_compose_dry_run(env)
    assert result.returncode != 0
    assert "set the express-session secret" in result.stderr


def podman_compose_dry_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman-compose", "--dry-run", "--file", str(ROOT / "compose.yaml"), "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
