"""Prometheus metrics on their own port, for one process and merged across workers."""

from __future__ import annotations

import re
import time
import urllib.request

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.integration.conftest import CORPUS
from tests.support.processes import RedisServer, ValidatorProcess, free_port, running_validator, server_kind
from tests.support.vectors import request_of


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^(sessionvalidator_\S+) (\S+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def metrics_port(validator: ValidatorProcess) -> int:
    assert validator.output is not None
    line = validator.output.wait_for(lambda line: '"event": "metrics"' in line)
    return int(re.search(r'"port": (\d+)', line).group(1))  # type: ignore[union-attr]


def run_all_cases(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        for case in CORPUS["cases"]:
            stub.ValidateSession(request_of(case), timeout=5)


def count(samples: dict[str, float], verdict: str, reason: str) -> float:
    return samples.get(f'sessionvalidator_validations_total{{reason="{reason}",verdict="{verdict}"}}', 0.0)


def expected(verdict: str, reason: str) -> int:
    return sum(
        1
        for c in CORPUS["cases"]
        if c["expect"]["verdict"] == f"VERDICT_{verdict}" and c["expect"]["reason"] == f"REASON_{reason.upper()}"
    )


def test_metrics_count_verdicts_secrets_latency_and_readiness(redis_server: RedisServer) -> None:
    from tests.harness import seed

    seed(redis_server, CORPUS)
    env = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_METRICS_LISTEN": "127.0.0.1:0",
    }
    with running_validator(env) as validator:
        port = metrics_port(validator)
        run_all_cases(validator.address)
        samples = scrape(port)
        for verdict, reason in [
            ("VALID", "session_active"),
            ("BAD_SIGNATURE", "signature_mismatch"),
            ("MISSING", "session_not_found"),
            ("MALFORMED", "not_signed"),
        ]:
            assert count(samples, verdict, reason) == expected(verdict, reason), (verdict, reason)
        assert samples['sessionvalidator_secret_verifications_total{index="1"}'] == 1  # the one rotated cookie
        assert samples['sessionvalidator_request_duration_seconds_count{method="ValidateSession"}'] == len(
            CORPUS["cases"]
        )
        assert samples["sessionvalidator_ready"] == 1
        assert samples[f'sessionvalidator_server_kind{{kind="{server_kind().name}",reason="configured"}}'] == 1
        redis_server.stop()
        with grpc.insecure_channel(validator.address) as channel:
            case = next(c for c in CORPUS["cases"] if c["name"] == "valid_scalar_user")
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.SessionValidatorStub(channel).ValidateSession(request_of(case), timeout=5)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        deadline = time.monotonic() + 5
        while scrape(port)["sessionvalidator_ready"] != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert scrape(port)['sessionvalidator_store_errors_total{reason="STORE_UNAVAILABLE"}'] >= 1


def test_workers_serve_merged_metrics(redis_server: RedisServer) -> None:
    from tests.harness import seed

    seed(redis_server, CORPUS)
    port, mport = free_port(), free_port()
    env = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_LISTEN": f"127.0.0.1:{port}",
        "SESSIONVALIDATOR_WORKERS": "2",
        "SESSIONVALIDATOR_METRICS_LISTEN": f"127.0.0.1:{mport}",
    }
    validator = ValidatorProcess(env).start()
    try:
        assert validator.output is not None
        validator.output.wait_for(lambda line: '"serving": true' in line)
        time.sleep(0.5)
        rounds = 6
        for _ in range(rounds):  # new connections: the kernel spreads them over both workers
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                stub = pb_grpc.SessionValidatorStub(ch)
                for case in CORPUS["cases"]:
                    stub.ValidateSession(request_of(case), timeout=5)
        # Each worker adds what it counted once a second: the merged count is at most that late.
        want = rounds * expected("VALID", "session_active")
        deadline = time.monotonic() + 3.0
        while count(samples := scrape(mport), "VALID", "session_active") < want and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count(samples, "VALID", "session_active") == want
        assert samples["sessionvalidator_ready"] == 1
        assert samples[f'sessionvalidator_server_kind{{kind="{server_kind().name}",reason="configured"}}'] == 1
        assert validator.terminate(timeout=20) == 0
    finally:
        validator.close()
