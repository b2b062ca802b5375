"""``sessionvalidator check`` against a server that answers with verdicts this version may not know."""

from __future__ import annotations

import json
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

    def ValidateSession(  # noqa: N802 - the gRPC method name
        self, request: pb.ValidateSessionRequest, context: grpc.ServicerContext
    ) -> pb.ValidateSessionResponse:
        del request, context
        return pb.ValidateSessionResponse(verdict=self.verdict)  # type: ignore[arg-type]  # unknown numbers on purpose

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
    servicer.verdict = UNKNOWN_VERDICT
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
    servicer.verdict = pb.VERDICT_MISSING
    assert main(["check", "--address", address, "--value", "s:x"], env={}) == 7
    assert json.loads(capsys.readouterr().out)["verdict"] == "VERDICT_MISSING"
