"""ValidateSession's pre-encoded answers are byte for byte what protobuf writes (the fuzz oracle checks whole ones)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator_service.servicer import _expire_time_field, serialize_response, timestamp


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1970, 1, 1, tzinfo=UTC),  # both fields zero: omitted
        datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),  # nanos only
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),  # negative seconds, positive nanos
        datetime(1900, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 3, 7, 0, 0, 123456, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_expire_time_is_encoded_as_protobuf_does(moment: datetime) -> None:
    response = pb.ValidateSessionResponse()
    response.expire_time.CopyFrom(timestamp(moment))
    assert _expire_time_field(moment) == response.SerializeToString()


def test_the_serializer_passes_bytes_through_and_serializes_messages() -> None:
    message = pb.ValidateSessionResponse(verdict=pb.VERDICT_VALID, session_id="abc")
    assert serialize_response(message) == message.SerializeToString()
    assert serialize_response(b"\x08\x01") == b"\x08\x01"
