"""``sessionvalidator check`` against a server that answers with verdicts this version may not know, or fails."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.cli import CHECK_EXIT, check_exit, main

UNKNOWN_VERDICT = 99


class FixedVerdict(pb_grpc.SessionValidatorServicer):
    """A SessionValidator that answers every call with one verdict number, known or not."""

    def __init__(self) -> None:
        self.verdict = UNKNOWN_VERDICT
        self.reason = pb.REASON_UNSPECIFIED
        self.failure: grpc.StatusCode | None = None

    def ValidateSession(  # noqa: N802 - the gRPC method name
        self, request: pb.ValidateSessionRequest, context: grpc.ServicerContext
    ) -> pb.ValidateSessionResponse:
        del request
        if self.failure is not None:
            context.abort(self.failure, "a failure on purpose")
        return pb.ValidateSessionResponse(
            verdict=self.verdict,  # type: ignore[arg-type]  # unknown numbers on purpose
            reason=self.reason,
            cookie_name="app.sid",
        )

    def ValidateSessions(  # noqa: N802 - the gRPC method name
        self, request: pb.ValidateSessionsRequest, context: grpc.ServicerContext
    ) -> pb.ValidateSessionsResponse:
        del request
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "check sends one credential")

    def GetJwks(  # noqa: N802 - the gRPC method name
        self, request: pb.GetJwksRequest, context: grpc.ServicerContext
    ) -> pb.GetJwksResponse:
        del request
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "check asks for no keys")


@pytest.fixture(scope="module")
def fixed() -> Iterator[tuple[FixedVerdict, str]]:
    servicer = FixedVerdict()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_SessionValidatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize(("name", "status"), sorted(CHECK_EXIT.items()))
def test_known_verdicts_keep_their_exit_status(name: str, status: int) -> None:
    assert check_exit(pb.Verdict.Value(name)) == status


@pytest.mark.parametrize("verdict", [pb.VERDICT_UNSPECIFIED, UNKNOWN_VERDICT, -1])
def test_unknown_or_unspecified_verdicts_are_a_failed_check(verdict: int) -> None:
    assert check_exit(verdict) == 3


def test_check_prints_an_unknown_verdict_number_and_exits_3(
    fixed: tuple[FixedVerdict, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = fixed
    servicer.verdict, servicer.reason, servicer.failure = UNKNOWN_VERDICT, pb.REASON_UNSPECIFIED, None
    status = main(["check", "--address", address, "--cookie", "connect.sid=x"], env={})
    out, err = capsys.readouterr()
    assert status == 3
    assert json.loads(out)["verdict"] == UNKNOWN_VERDICT
    assert "unknown verdict 99" in err
    assert "Traceback" not in out + err


def test_check_still_exits_by_a_known_verdict(
    fixed: tuple[FixedVerdict, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = fixed
    servicer.verdict, servicer.reason, servicer.failure = pb.VERDICT_MISSING, pb.REASON_UNSPECIFIED, None
    assert main(["check", "--address", address, "--value", "s:x"], env={}) == 7
    assert json.loads(capsys.readouterr().out)["verdict"] == "VERDICT_MISSING"


def test_a_cookie_without_a_name_gets_a_hint_to_use_value(
    fixed: tuple[FixedVerdict, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = fixed
    servicer.verdict, servicer.reason, servicer.failure = pb.VERDICT_MISSING, pb.REASON_COOKIE_NOT_FOUND, None
    bare = "s%3Ahunter2sid.signature"
    assert main(["check", "--address", address, "--cookie", bare], env={}) == 7
    out, err = capsys.readouterr()
    assert json.loads(out)["reason"] == "REASON_COOKIE_NOT_FOUND"
    assert "--value" in err
    assert "app.sid=" in err  # the service's cookie name, as it answered it
    assert "hunter2" not in err  # never the cookie
    # A header with other cookies: the hint names the cookie looked for, not --value.
    assert main(["check", "--address", address, "--cookie", "other=hunter2"], env={}) == 7
    err = capsys.readouterr().err
    assert "no cookie named 'app.sid'" in err
    assert "--value" not in err
    assert "hunter2" not in err
    # Found (any other reason): no hint.
    servicer.reason = pb.REASON_EMPTY_VALUE
    assert main(["check", "--address", address, "--cookie", "app.sid="], env={}) == 7
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (grpc.StatusCode.UNIMPLEMENTED, "is not a SessionValidator"),
        (grpc.StatusCode.INTERNAL, "failed (INTERNAL)"),
    ],
)
def test_a_failed_call_says_where_and_what_to_do(
    fixed: tuple[FixedVerdict, str], capsys: pytest.CaptureFixture[str], code: grpc.StatusCode, says: str
) -> None:
    servicer, address = fixed
    servicer.failure = code
    try:
        assert main(["check", "--address", address, "--cookie", "app.sid=x"], env={}) == 3
    finally:
        servicer.failure = None
    out, err = capsys.readouterr()
    assert json.loads(out)["error"] == code.name
    assert says in err
    assert address in err
    assert "Error" not in err  # a cause and a fix, not an exception class


def test_no_service_at_the_address_says_so_and_how_to_point_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        assert main(["check", "--address", address, "--value", "s:x", "--timeout", "2"], env={}) == 3
    out, err = capsys.readouterr()
    assert json.loads(out)["error"] == "UNAVAILABLE"
    assert f"no service answers at {address}" in err
    assert "--address" in err
    assert "--env-file" in err
