"""Every shared vector against the real server in-process, over the in-memory store."""

from __future__ import annotations

from typing import Any

import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.fast.conftest import CORPUS
from tests.support.vectors import check_vector, request_of


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda c: c["name"])
def test_vector(stub: pb_grpc.SessionValidatorStub, case: dict[str, Any]) -> None:
    check_vector(stub.ValidateSession(request_of(case), timeout=5), case["expect"])


def test_one_batch_of_every_vector_answers_each_as_alone(stub: pb_grpc.SessionValidatorStub) -> None:
    batch = pb.ValidateSessionsRequest(requests=[request_of(case) for case in CORPUS["cases"]])
    responses = stub.ValidateSessions(batch, timeout=5).responses
    assert len(responses) == len(CORPUS["cases"])
    for case, response in zip(CORPUS["cases"], responses, strict=True):
        check_vector(response, case["expect"])
