"""What the store holds, judged as express-session + connect-redis + Passport would."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sessionvalidator_service.domain import (
    MAX_CREDENTIAL_LENGTH,
    Reason,
    Verdict,
    judge_stored,
    read_credential,
)
from sessionvalidator_service.jsemu import js_string, parse_json
from sessionvalidator_service.signature import Signer
from sessionvalidator_service.stores import StoredSession
from tests.support.stored import redis_stored

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
LIVE = {"originalMaxAge": 86400000, "expires": "2026-11-23T12:00:00.000Z", "httpOnly": True, "path": "/"}


def stored(session: Any) -> bytes:
    return json.dumps(session).encode()


def test_every_reason_belongs_to_one_verdict() -> None:
    assert {reason.verdict for reason in Reason} == set(Verdict)


@pytest.mark.parametrize("raw", [None, b""])
def test_absent_key_is_missing(raw: bytes | None) -> None:
    assert judge_stored(redis_stored(raw, -2), NOW).reason is Reason.SESSION_NOT_FOUND


def test_key_gone_between_get_and_pttl_is_missing() -> None:
    assert judge_stored(redis_stored(stored({"cookie": LIVE}), -2), NOW).reason is Reason.SESSION_NOT_FOUND


@pytest.mark.parametrize("value", [None, False, 0, 0.0, ""])
def test_falsy_session_is_no_session(value: Any) -> None:
    # express-session: `if (!sess) generate()`
    assert judge_stored(redis_stored(stored(value), 1000), NOW).reason is Reason.SESSION_NOT_FOUND


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'"a string"',
        b"[]",
        b"5",
        b"true",
        stored({"passport": {"user": 1}}),
        stored({"cookie": None}),
        stored({"cookie": 5}),
        b"NaN",
        b'{"cookie":{}',
    ],
)
def test_unreadable_or_cookieless_session_is_corrupt(raw: bytes) -> None:
    assert judge_stored(redis_stored(raw, 1000), NOW).reason is Reason.CORRUPT_SESSION


def test_ttl_is_the_truth_over_a_stale_stored_expiry() -> None:
    # rolling + resave:false extends the TTL but leaves cookie.expires behind.
    stale = {**LIVE, "expires": "2026-11-20T00:00:00.000Z"}
    judgement = judge_stored(redis_stored(stored({"cookie": stale}), 5000), NOW)
    assert judgement.reason is Reason.SESSION_ACTIVE
    assert judgement.expire_time == NOW + timedelta(seconds=5)


def test_no_ttl_and_past_expiry_is_expired() -> None:
    past = {**LIVE, "expires": "2026-11-22T11:59:59.999Z"}
    judgement = judge_stored(redis_stored(stored({"cookie": past, "passport": {"user": "1"}}), -1), NOW)
    assert judgement.reason is Reason.SESSION_EXPIRED
    assert judgement.user is None
    assert judgement.expire_time == datetime(2026, 11, 22, 11, 59, 59, 999000, tzinfo=UTC)


def test_no_ttl_and_expiry_exactly_now_is_expired() -> None:
    now = {**LIVE, "expires": "2026-11-22T12:00:00.000Z"}
    assert judge_stored(redis_stored(stored({"cookie": now}), -1), NOW).reason is Reason.SESSION_EXPIRED


def test_no_ttl_and_future_expiry_is_valid_until_then() -> None:
    judgement = judge_stored(redis_stored(stored({"cookie": LIVE}), -1), NOW)
    assert judgement.reason is Reason.SESSION_ACTIVE
    assert judgement.expire_time == datetime(2026, 11, 23, 12, tzinfo=UTC)


@pytest.mark.parametrize("expires", [None, "garbage", 0, False])
def test_no_ttl_and_no_usable_expiry_never_expires(expires: Any) -> None:
    judgement = judge_stored(redis_stored(stored({"cookie": {**LIVE, "expires": expires}}), -1), NOW)
    assert judgement.reason is Reason.SESSION_ACTIVE
    assert judgement.expire_time is None


@pytest.mark.parametrize(
    ("passport", "user_id", "is_record"),
    [
        ({"user": "42"}, "42", False),
        ({"user": 42}, "42", False),
        ({"user": 0}, "0", False),  # Passport: `su || su === 0`
        ({"user": 1.5}, "1.5", False),
        ({"user": True}, "true", False),
        ({"user": {"id": 7, "username": "x"}}, "7", True),
        ({"user": {"_id": "abc"}}, "abc", True),
        ({"user": {}}, "", True),  # an empty object is truthy in JavaScript
    ],
)
def test_passport_user_present(passport: dict[str, Any], user_id: str, is_record: bool) -> None:
    judgement = judge_stored(redis_stored(stored({"cookie": LIVE, "passport": passport}), 1000), NOW)
    assert judgement.reason is Reason.SESSION_ACTIVE
    assert judgement.user is not None
    assert judgement.user.user_id == user_id
    assert (judgement.user.record is not None) is is_record


@pytest.mark.parametrize("passport", [{}, {"user": ""}, {"user": None}, {"user": False}, "user", None, []])
def test_passport_user_absent(passport: Any) -> None:
    judgement = judge_stored(redis_stored(stored({"cookie": LIVE, "passport": passport}), 1000), NOW)
    assert judgement.reason is Reason.SESSION_ACTIVE
    assert judgement.user is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1e21, "1e+21"), (1.5e-7, "1.5e-7"), (-0.0, "0"), (123456789012.0, "123456789012"), ([1, None, "a"], "1,,a")],
)
def test_js_string(value: Any, expected: str) -> None:
    assert js_string(value) == expected


def test_parse_json_accepts_what_json_parse_accepts() -> None:
    # JSON.parse turns integers beyond 2**53 into doubles.
    assert parse_json(b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}
    assert parse_json(b'{"s": "\\ud800"}') == {"s": "\ufffd"}  # lone surrogate, as UTF-8 encoding would
    assert parse_json(b'{"s": "\xff"}') == {"s": "\ufffd"}  # node-redis decodes invalid UTF-8 with U+FFFD
    with pytest.raises(ValueError, match=r"."):
        parse_json(b"NaN")


def test_oversized_credentials_are_refused_before_parsing() -> None:
    signer = Signer(["s" * 32])
    too_long = "connect.sid=" + "x" * MAX_CREDENTIAL_LENGTH
    assert read_credential(signer, "connect.sid", header=too_long).reason is Reason.TOO_LARGE
    assert read_credential(signer, "connect.sid", value="x" * (MAX_CREDENTIAL_LENGTH + 1)).reason is Reason.TOO_LARGE
    assert read_credential(signer, "connect.sid", value="x" * MAX_CREDENTIAL_LENGTH).reason is Reason.NOT_SIGNED


@pytest.mark.parametrize(
    ("expires_ms", "reason"),
    [
        (12, Reason.SESSION_EXPIRED),
        (NOW.timestamp() * 1000 - 1, Reason.SESSION_EXPIRED),
        (NOW.timestamp() * 1000 + 60_000, Reason.SESSION_ACTIVE),
    ],
)
def test_numeric_expires_without_ttl_is_epoch_milliseconds(expires_ms: float, reason: Reason) -> None:
    # express-session's MemoryStore: `typeof expires === 'string' ? new Date(expires) : expires`,
    # then `expires <= Date.now()`: a number is compared as epoch milliseconds.
    judgement = judge_stored(redis_stored(stored({"cookie": {**LIVE, "expires": expires_ms}}), -1), NOW)
    assert judgement.reason is reason
    assert judgement.expire_time is not None
    assert judgement.expire_time.timestamp() * 1000 == pytest.approx(expires_ms, abs=1)


@pytest.mark.parametrize("unusable", ["too_large", "encrypted", "wrong_type"])
def test_a_store_expiry_in_the_past_is_expired_whatever_the_session_holds(unusable: Any) -> None:
    past = NOW - timedelta(seconds=1)
    judgement = judge_stored(StoredSession(None, expires=past, unusable=unusable), NOW)
    assert (judgement.reason, judgement.expire_time) == (Reason.SESSION_EXPIRED, past)
    assert (
        judge_stored(StoredSession(None, expires=NOW + timedelta(1), unusable=unusable), NOW).reason.verdict
        is Verdict.MALFORMED
    )


# A session as connect-mongo holds it: the session JSON beside `expires`, no TTL of its own.
MONGO_USER = {"id": "42", "username": "ada"}


@pytest.mark.parametrize(
    ("expires", "reason"),
    [
        (NOW - timedelta(milliseconds=1), Reason.SESSION_EXPIRED),
        (NOW, Reason.SESSION_EXPIRED),  # connect-mongo finds only `expires > now`
        (NOW + timedelta(milliseconds=1), Reason.SESSION_ACTIVE),
    ],
    ids=["a-millisecond-ago", "now", "in-a-millisecond"],
)
@pytest.mark.parametrize(
    "cookie", [LIVE, {**LIVE, "expires": "2026-11-20T00:00:00.000Z"}], ids=["cookie-live", "cookie-past"]
)
def test_connect_mongos_expires_alone_decides_a_real_session(
    expires: datetime, reason: Reason, cookie: dict[str, Any]
) -> None:
    """The document's `expires` is the truth, to the millisecond, whatever the stored cookie says (a touch
    moves `expires` and leaves cookie.expires behind)."""
    data = stored({"cookie": cookie, "passport": {"user": MONGO_USER}})
    judgement = judge_stored(StoredSession(data, expires=expires), NOW)
    assert (judgement.reason, judgement.expire_time) == (reason, expires)
    if reason is Reason.SESSION_ACTIVE:
        assert judgement.user is not None
        assert (judgement.user.user_id, judgement.user.record) == ("42", MONGO_USER)
    else:
        assert judgement.user is None


def test_past_orjsons_depth_the_answer_does_not_depend_on_the_stack() -> None:
    # A fuzzer found the service (deep in its own stack) saying CORRUPT where a caller with a higher
    # recursion limit read the same session through the standard library.
    import sys

    deep = b'{"cookie":{},"x":' + b"[" * 1100 + b"1" + b"]" * 1100 + b"}"
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        with pytest.raises(ValueError, match="nested too deeply"):
            parse_json(deep)
    finally:
        sys.setrecursionlimit(previous)
    assert judge_stored(redis_stored(deep, 1000), NOW).reason is Reason.CORRUPT_SESSION
