"""Regression tests for the service bugs the fuzzers found (tests/fuzz/oracles.py FOUND_BUGS).

Each test is the minimal input that once ended in an exception (INTERNAL over
gRPC) or an unparseable response, and states the promised behaviour: a
verdict. All of them failed on 030109f and pass since a5a935f.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.domain import Credential, Reason, UserRecord, judge_stored
from sessionvalidator_service.jsemu import parse_json
from sessionvalidator_service.mint import encode_uri_component
from sessionvalidator_service.stores.redis import RedisSessionStore
from tests.fuzz.conftest import SERVICE_COOKIE, SESSION_PREFIX, FuzzService
from tests.fuzz.oracles import FIXED_NOW, check_response, make_servicer, profile_message
from tests.support.stored import redis_stored

COOKIE = {"originalMaxAge": None, "expires": None, "httpOnly": True, "path": "/"}
# The range of a google.protobuf.Timestamp.
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)


def nested_list(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + '{"id":1}' + "}" * depth


def session_with(**extra: Any) -> bytes:
    return json.dumps({"cookie": COOKIE, **extra}).encode()


# ---------------------------------------------------------------- SV-FUZZ-1: parse_json recursion


def test_sv_fuzz_1_a_session_nested_past_1024_levels_is_judged() -> None:
    # orjson stops at 1024 levels; the json.loads fallback recursed past Python's limit (RecursionError).
    raw = b'{"cookie":{},"x":' + nested_list(1100).encode() + b"}"
    assert judge_stored(redis_stored(raw, 60_000), FIXED_NOW).reason in {Reason.SESSION_ACTIVE, Reason.CORRUPT_SESSION}


def test_sv_fuzz_1_parse_json_raises_only_value_error() -> None:
    with pytest.raises(ValueError, match=r".*"):
        parse_json(nested_list(1100).encode())


def test_sv_fuzz_1_a_deeply_nested_user_record_is_no_record() -> None:
    # store.py RedisSessionStore._user catches ValueError only.
    assert RedisSessionStore._user(nested_list(1100).encode(), None) is None


# ---------------------------------------------------------------- SV-FUZZ-2: js_string recursion


def test_sv_fuzz_2_a_deeply_nested_passport_id_is_stringified() -> None:
    # 1003 levels in all: orjson parses it; String([[...[1]...]]) is "1".
    raw = b'{"cookie":{},"passport":{"user":{"id":' + nested_list(1000).encode() + b"}}}"
    judgement = judge_stored(redis_stored(raw, 60_000), FIXED_NOW)
    assert judgement.user is not None
    assert judgement.user.user_id == "1"


# ---------------------------------------------------------------- SV-FUZZ-3: build_profile recursion


def test_sv_fuzz_3_a_user_record_nested_600_levels_makes_a_profile() -> None:
    record = parse_json(nested_object(600).encode())  # orjson: fine; Struct.update recursed
    assert profile_message(UserRecord("1", record), record).id == "1"


def test_sv_fuzz_3_a_roles_string_of_brackets_makes_a_profile() -> None:
    record = {"id": 1, "roles": "[" * 1100}  # a hash field or JSON string, read by _strings' json.loads
    assert profile_message(UserRecord("1", record), record).id == "1"


# ---------------------------------------------------------------- SV-FUZZ-4: expire_time out of range


@pytest.mark.parametrize(
    ("expires", "reason", "expire_time"),
    [
        ("9999-12-31T23:59:59.999-01:00", pb.REASON_SESSION_ACTIVE, LATEST),
        ("0001-01-01T00:00:00+01:00", pb.REASON_SESSION_EXPIRED, EARLIEST),
    ],
)
def test_sv_fuzz_4_an_expiry_at_the_calendar_edge_makes_a_response(
    expires: str, reason: int, expire_time: datetime
) -> None:
    # No key TTL (connect-redis disableTTL): the stored cookie.expires becomes expire_time,
    # and Timestamp.FromDatetime raised OverflowError.
    raw = json.dumps({"cookie": {**COOKIE, "expires": expires}}).encode()
    response, _ = make_servicer()._judge(Credential(None, "sid", 0), redis_stored(raw, -1))
    check_response(response)
    assert response.reason == reason
    assert response.expire_time.ToDatetime(tzinfo=UTC) == expire_time


# ---------------------------------------------------------------- SV-FUZZ-5: PTTL of millennia


@pytest.mark.parametrize("pttl_ms", [10**15, 9 * 10**18])
def test_sv_fuzz_5_a_key_ttl_of_millennia_is_active(pttl_ms: int) -> None:
    # SET key value PX 1000000000000000 is accepted by Redis (about 31,700 years); now + PTTL overflowed.
    judgement = judge_stored(redis_stored(session_with(), pttl_ms), FIXED_NOW)
    assert judgement.reason is Reason.SESSION_ACTIVE
    assert judgement.expire_time == LATEST


# ---------------------------------------------------------------- SV-FUZZ-6: responses too deep for the client


@pytest.mark.parametrize("depth", [33, 60, 600])
def test_sv_fuzz_6_a_deep_user_record_reaches_the_python_client(depth: int) -> None:
    # upb refuses messages nested past 100 levels: a record 33 objects deep made a response
    # that the Python client could not parse (INTERNAL "Exception deserializing response!").
    record = parse_json(nested_object(depth).encode())
    response = pb.ValidateSessionResponse(user=profile_message(UserRecord("1", record), record))
    assert pb.ValidateSessionResponse.FromString(response.SerializeToString()) == response


# ---------------------------------------------------------------- SV-FUZZ-8: huge integer ids


def test_sv_fuzz_8_a_passport_id_beyond_double_range_is_infinity() -> None:
    raw = session_with(passport={"user": 10**309})  # JSON.parse: Infinity; String(Infinity) = "Infinity"
    judgement = judge_stored(redis_stored(raw, 60_000), FIXED_NOW)  # float(10**309) raised OverflowError
    assert judgement.user is not None
    assert judgement.user.user_id == "Infinity"


# ---------------------------------------------------------------- SV-FUZZ-9: parity, integers over 4300 digits


def test_sv_fuzz_9_a_session_with_a_4301_digit_number_is_active() -> None:
    # Python's int-digits limit made json.loads raise: CORRUPT_SESSION where express-session serves it.
    raw = b'{"cookie":{"expires":null},"n":' + b"1" * 4301 + b"}"
    assert judge_stored(redis_stored(raw, 60_000), FIXED_NOW).reason is Reason.SESSION_ACTIVE


# ---------------------------------------------------------------- SV-FUZZ-10: surrogates in roles JSON

ROLES_WITH_SURROGATE = '["admin", "\\ud800"]'  # the text ["admin", "\ud800"], as a hash field holds it


@pytest.mark.parametrize("field", ["roles", "role"])
def test_sv_fuzz_10_a_roles_string_with_a_lone_surrogate_makes_a_profile(field: str) -> None:
    # Found by atheris_profile.py: _strings' json.loads kept the lone surrogate and roles.extend
    # raised UnicodeEncodeError. parse_json scrubs it as JavaScript's UTF-8 encoder does.
    record = {"id": "9", field: ROLES_WITH_SURROGATE}
    profile = profile_message(UserRecord("9", record), record)
    assert list(profile.roles) == ["admin", "\ufffd"]


def test_sv_fuzz_10_a_hash_user_record_with_a_lone_surrogate_in_roles_makes_a_profile() -> None:
    record = RedisSessionStore._user(None, {b"id": b"9", b"roles": ROLES_WITH_SURROGATE.encode()})
    assert record is not None
    assert list(profile_message(UserRecord("9", record), record).roles) == ["admin", "\ufffd"]


# ---------------------------------------------------------------- the same bugs, end to end


@pytest.fixture(scope="module")
def stub(fuzz_service: FuzzService) -> Iterator[pb_grpc.SessionValidatorStub]:
    with grpc.insecure_channel(fuzz_service.address) as channel:
        yield pb_grpc.SessionValidatorStub(channel)


# (bug, stored value, PX in ms or None for no TTL): each ended in INTERNAL (for SV-FUZZ-6: a
# response the Python client could not parse).
END_TO_END = [
    ("SV-FUZZ-1", b'{"cookie":{},"x":' + nested_list(1100).encode() + b"}", 60_000),
    ("SV-FUZZ-2", b'{"cookie":{},"passport":{"user":{"id":' + nested_list(1000).encode() + b"}}}", 60_000),
    ("SV-FUZZ-3", b'{"cookie":{},"passport":{"user":' + nested_object(600).encode() + b"}}", 60_000),
    ("SV-FUZZ-4", json.dumps({"cookie": {**COOKIE, "expires": "9999-12-31T23:59:59.999-01:00"}}).encode(), None),
    ("SV-FUZZ-5", session_with(), 10**15),
    ("SV-FUZZ-6", session_with(passport={"user": json.loads(nested_object(33))}), 60_000),
    ("SV-FUZZ-8", session_with(passport={"user": 10**309}), 60_000),
    ("SV-FUZZ-10", session_with(passport={"user": {"id": "9", "roles": ROLES_WITH_SURROGATE}}), 60_000),
]


@pytest.mark.integration
@pytest.mark.parametrize(("bug", "stored", "px"), END_TO_END, ids=[case[0] for case in END_TO_END])
def test_a_verified_cookie_gets_a_verdict_whatever_the_store_holds(
    fuzz_service: FuzzService, stub: pb_grpc.SessionValidatorStub, bug: str, stored: bytes, px: int | None
) -> None:
    sid = f"finding-{bug}"
    fuzz_service.redis.set(SESSION_PREFIX + sid, stored, px=px)
    header = f"{SERVICE_COOKIE}={encode_uri_component('s:' + fuzz_service.signer.sign(sid))}"
    response = stub.ValidateSession(pb.ValidateSessionRequest(cookie_header_text=header), timeout=10)
    check_response(response, SERVICE_COOKIE)
    assert response.session_id == sid


# ---------------------------------------------------------------- SV-FUZZ-7: text fields that are not UTF-8


def _raw_call(fuzz_service: FuzzService, wire: bytes) -> pb.ValidateSessionResponse:
    with grpc.insecure_channel(fuzz_service.address) as channel:
        call = channel.unary_unary(
            "/sessionvalidator.v1.SessionValidator/ValidateSession", request_serializer=None, response_deserializer=None
        )
        return pb.ValidateSessionResponse.FromString(call(wire, timeout=10))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("field_tag", "reason"),
    [(0x12, pb.REASON_COOKIE_NOT_FOUND), (0x1A, pb.REASON_NOT_SIGNED)],
    ids=["cookie_header_text", "signed_value"],
)
def test_sv_fuzz_7_a_text_field_that_is_not_utf8_gets_a_verdict(
    fuzz_service: FuzzService, field_tag: int, reason: int
) -> None:
    # Was UNKNOWN "Unexpected <class 'google.protobuf.message.DecodeError'>: ... bad UTF-8".
    response = _raw_call(fuzz_service, bytes([field_tag, 2]) + b"\xff\xfe")
    check_response(response, SERVICE_COOKIE)
    assert response.reason == reason


@pytest.mark.integration
def test_sv_fuzz_7_header_text_that_is_not_utf8_reads_as_latin1_like_header_bytes(fuzz_service: FuzzService) -> None:
    # The latin-1 byte 0xE9 in the sid, as Node reads it: the same verdict through either field.
    sid = "caf\xe9-finding"
    header = f"{SERVICE_COOKIE}=s:{fuzz_service.signer.sign(sid)}".encode("latin-1")
    fuzz_service.redis.set(SESSION_PREFIX + sid, session_with(), px=60_000)
    as_text = _raw_call(fuzz_service, bytes([0x12]) + _varint(len(header)) + header)
    as_bytes = _raw_call(fuzz_service, pb.ValidateSessionRequest(cookie_header=header).SerializeToString())
    assert as_text.reason == as_bytes.reason == pb.REASON_SESSION_ACTIVE
    assert as_text.session_id == as_bytes.session_id == sid


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
