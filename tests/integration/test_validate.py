"""ValidateSession over real gRPC against a real Redis, case by case from the shared vectors."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.conftest import VECTORS, load_vectors
from tests.integration.conftest import CORPUS
from tests.support.processes import (
    RedisServer,
    ValidatorProcess,
    debug_sleep,
    free_port,
    running_validator,
    server_kind,
)
from tests.support.vectors import check_vector, request_of


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda c: c["name"])
def test_vector(stub: pb_grpc.SessionValidatorStub, case: dict[str, Any]) -> None:
    check_vector(stub.ValidateSession(request_of(case), timeout=5), case["expect"])


def test_every_verdict_and_reason_is_covered_by_the_vectors() -> None:
    # The shared vectors, and those of one store only (validate_session_<store>.json).
    cases = [
        case for path in sorted(VECTORS.glob("validate_session*.json")) for case in load_vectors(path.name)["cases"]
    ]
    verdicts = {case["expect"]["verdict"] for case in cases}
    reasons = {case["expect"]["reason"] for case in cases}
    assert verdicts == {name for name in pb.Verdict.keys() if name != "VERDICT_UNSPECIFIED"}  # noqa: SIM118
    assert reasons == {name for name in pb.Reason.keys() if name != "REASON_UNSPECIFIED"}  # noqa: SIM118


def test_user_record_attributes_hold_the_whole_record(stub: pb_grpc.SessionValidatorStub) -> None:
    case = next(c for c in CORPUS["cases"] if c["name"] == "valid_object_user")
    response = stub.ValidateSession(request_of(case), timeout=5)
    attributes = json_format.MessageToDict(response.user.attributes)
    assert attributes["emails"] == [{"value": "ann@example.org"}]
    assert attributes["roles"] == ["admin", "billing"]


def test_expire_time_follows_the_key_ttl(stub: pb_grpc.SessionValidatorStub) -> None:
    case = next(c for c in CORPUS["cases"] if c["name"] == "valid_scalar_user")
    response = stub.ValidateSession(request_of(case), timeout=5)
    remaining = response.expire_time.ToSeconds() - time.time()
    # Seeded with a 3600 s TTL, while the stored cookie.expires says 2099.
    assert 3000 < remaining <= 3601


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


def test_store_outage_is_unavailable_never_a_verdict() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = {**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": dead}
    with running_validator(env, ready=False) as validator, grpc.insecure_channel(validator.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        case = next(c for c in CORPUS["cases"] if c["name"] == "valid_scalar_user")
        with pytest.raises(grpc.RpcError) as caught:
            stub.ValidateSession(request_of(case), timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        info = error_info(caught.value)
        assert info.reason == "STORE_UNAVAILABLE"
        assert info.domain == "sessionvalidator.v1"
        trailers: dict[str, str | bytes] = {m.key: m.value for m in caught.value.trailing_metadata()}
        assert "grpc-retry-pushback-ms" not in trailers  # a refused connection may be retried elsewhere
        # Cookies that never need the store are still judged.
        bad = next(c for c in CORPUS["cases"] if c["name"] == "bad_signature_tampered")
        assert stub.ValidateSession(request_of(bad), timeout=5).verdict == pb.VERDICT_BAD_SIGNATURE


def test_slow_store_times_out_within_the_store_timeout(redis_server: RedisServer) -> None:
    env = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "200",
    }
    with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        case = next(c for c in CORPUS["cases"] if c["name"] == "missing_unknown_session")
        stub.ValidateSession(request_of(case), timeout=5)  # warm the connection pool
        sleeper = redis_server.client()
        sleeper.client_setname("sleeper")
        import threading

        thread = threading.Thread(target=lambda: debug_sleep(sleeper, 1.5))
        thread.start()
        time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            stub.ValidateSession(request_of(case), timeout=5)
        elapsed = time.monotonic() - started
        thread.join()
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_info(caught.value).reason == "STORE_TIMEOUT"
        # A slow store is slow for every replica: clients are told not to retry
        # (where the server kind can send it: a documented gap of the native server).
        trailers: dict[str, str | bytes] = {m.key: m.value for m in caught.value.trailing_metadata()}
        assert trailers.get("grpc-retry-pushback-ms") == ("-1" if server_kind().retry_pushback else None)
        assert elapsed < 0.6  # 200 ms store timeout plus a margin, not the 1.5 s sleep


def test_logs_never_carry_cookies_session_ids_or_secrets(
    seeded: ValidatorProcess, stub: pb_grpc.SessionValidatorStub
) -> None:
    for case in CORPUS["cases"]:
        stub.ValidateSession(request_of(case), timeout=5)
    assert seeded.output is not None
    time.sleep(0.2)
    text = "\n".join(seeded.output.lines)
    for secret in json.loads(CORPUS["settings"]["SESSIONVALIDATOR_SECRETS"]):
        assert secret not in text
    for session in CORPUS["sessions"]:
        if len(session["sid"]) > 8:
            assert session["sid"] not in text
    for case in CORPUS["cases"]:
        for value in case["request"].values():
            if len(value) > 20:
                assert value not in text
    events = {record.get("event") for record in seeded.output.json_lines()}
    # A forged signature is logged apart from a missing or corrupt session.
    assert {"bad_signature", "session_not_found", "corrupt_session", "session_expired"} <= events


def test_batch_answers_each_credential_as_the_single_call_does(stub: pb_grpc.SessionValidatorStub) -> None:
    requests = [request_of(case) for case in CORPUS["cases"]]
    batch = stub.ValidateSessions(pb.ValidateSessionsRequest(requests=requests), timeout=5)
    assert len(batch.responses) == len(requests)
    for case, request, response in zip(CORPUS["cases"], requests, batch.responses, strict=True):
        single = stub.ValidateSession(request, timeout=5)
        single.ClearField("expire_time")
        response.ClearField("expire_time")  # TTL-derived: moves between the two calls
        assert response == single, case["name"]
    assert stub.ValidateSessions(pb.ValidateSessionsRequest(), timeout=5).responses == []


def test_batch_size_is_bounded(stub: pb_grpc.SessionValidatorStub) -> None:
    request = pb.ValidateSessionsRequest(requests=[pb.ValidateSessionRequest(cookie_header_text="a=b")] * 257)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ValidateSessions(request, timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "BATCH_TOO_LARGE"
    del request.requests[256:]
    assert len(stub.ValidateSessions(request, timeout=5).responses) == 256


def test_batch_store_outage_fails_the_whole_call() -> None:
    env = {**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with running_validator(env, ready=False) as validator, grpc.insecure_channel(validator.address) as channel:
        requests = [request_of(case) for case in CORPUS["cases"]]
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.SessionValidatorStub(channel).ValidateSessions(
                pb.ValidateSessionsRequest(requests=requests), timeout=5
            )
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_info(caught.value).reason == "STORE_UNAVAILABLE"


@pytest.mark.parametrize("method", ["ValidateSession", "ValidateSessions"])
def test_a_body_that_is_not_protobuf_is_invalid_argument(seeded: ValidatorProcess, method: str) -> None:
    with grpc.insecure_channel(seeded.address) as channel:
        call = channel.unary_unary(f"/sessionvalidator.v1.SessionValidator/{method}", None, None)
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff\xff\xff\xff", timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "MALFORMED_REQUEST"
    assert "lenient" not in (caught.value.details() or "")


def test_text_that_is_not_utf8_is_read_as_latin1(seeded: ValidatorProcess) -> None:
    case = next(c for c in CORPUS["cases"] if c["name"] == "valid_latin1_byte_session_id")
    header = base64.b64decode(case["request"]["cookie_header_b64"])  # holds the raw byte 0xE9
    wire = bytes([0x12, len(header)]) + header  # field 2, cookie_header_text, with invalid UTF-8
    with grpc.insecure_channel(seeded.address) as channel:
        call = channel.unary_unary("/sessionvalidator.v1.SessionValidator/ValidateSession", None, None)
        response = pb.ValidateSessionResponse.FromString(call(wire, timeout=5))
    assert response.verdict == pb.VERDICT_VALID
    assert response.session_id == "\u00e9"
