"""Writes tests/vectors/validate_session.json, the corpus every client runs.

The expectations below are written by hand from express-session's behaviour
(expressjs/session index.js `getcookie` and session/store.js, expressjs/cookie
index.js `parse` at v0.7.2, tj/node-cookie-signature index.js `unsign` at
1.0.7, connect-redis index.ts); only the signatures are
computed, with the Signer whose output the official vectors and the Node
differential test pin down. Run `python tests/vectors/make_validate_session.py`
after changing a case, and commit the JSON.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from sessionvalidator_service.mint import encode_uri_component
from sessionvalidator_service.signature import Signer

SECRETS = [
    "vectors: current signing secret, comfortably over 32 bytes",
    "vectors: previous secret, still accepted during rotation",
]
SIGNER = Signer(SECRETS)
NAME = "connect.sid"
LIVE_COOKIE = {"originalMaxAge": 86400000, "expires": "2099-01-01T00:00:00.000Z", "httpOnly": True, "path": "/"}
PAST_COOKIE = {"originalMaxAge": 1000, "expires": "2001-01-01T00:00:00.000Z", "httpOnly": True, "path": "/"}


def signed(sid: str, index: int = 0) -> str:
    """The wire value express-session sets: encodeURIComponent('s:' + sign(sid))."""
    return encode_uri_component("s:" + SIGNER.sign(sid, index))


def stored(session: dict[str, Any]) -> str:
    return json.dumps(session, separators=(",", ":"), ensure_ascii=False)


ANN = {
    "id": "u-100",
    "username": "ann",
    "displayName": "Ann Example",
    "emails": [{"value": "ann@example.org"}],
    "roles": ["admin", "billing"],
}

SESSIONS: list[dict[str, Any]] = [
    {
        "sid": "scalar-user-session-000000000001",
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": "42"}}),
        "ttl_s": 3600,
    },
    {
        "sid": "object-user-session-000000000002",
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": ANN}}),
        "ttl_s": 3600,
    },
    {
        "sid": "zero-user-session-00000000000003",
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": 0}}),
        "ttl_s": 3600,
    },
    {"sid": "anonymous-session-00000000000004", "value": stored({"cookie": LIVE_COOKIE, "views": 3}), "ttl_s": 3600},
    {
        "sid": "logged-out-session-0000000000005",
        "value": stored({"cookie": LIVE_COOKIE, "passport": {}}),
        "ttl_s": 3600,
    },
    {
        "sid": "expired-no-ttl-session-000000006",
        "value": stored({"cookie": PAST_COOKIE, "passport": {"user": "42"}}),
        "ttl_s": None,
    },
    {"sid": "corrupt-session-0000000000000007", "value": "{not json", "ttl_s": 3600},
    {"sid": "no-cookie-object-000000000000008", "value": stored({"passport": {"user": "42"}}), "ttl_s": 3600},
    {
        "sid": "record-json-user-000000000000009",
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": 7}}),
        "ttl_s": 3600,
    },
    {
        "sid": "record-hash-user-000000000000010",
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": "8"}}),
        "ttl_s": 3600,
    },
    {
        "sid": "empty-string-user-00000000000011",
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": ""}}),
        "ttl_s": 3600,
    },
    {"sid": "\u00e9", "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": "latin"}}), "ttl_s": 3600},
    {"sid": "a.b.c", "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": "dotted"}}), "ttl_s": 3600},
    {
        "sid": "wrong-type-session-0000000000014",
        "type": "hash",
        "value": {"cookie": "not a string value"},
        "ttl_s": 3600,
    },
    {"sid": "null-session-000000000000000015", "value": "null", "ttl_s": 3600},
    {"sid": "zero-session-000000000000000016", "value": "0", "ttl_s": 3600},
    {
        "sid": "no-ttl-future-session-00000017",
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": "42"}}),
        "ttl_s": None,
    },
    {
        "sid": "no-ttl-browser-session-0000018",
        "value": stored({"cookie": {"originalMaxAge": None, "expires": None, "httpOnly": True, "path": "/"}}),
        "ttl_s": None,
    },
    {
        "sid": "mongo-id-user-session-00000019",
        "value": stored(
            {"cookie": LIVE_COOKIE, "passport": {"user": {"_id": "6512bd43d9caa6e0", "username": "mongo"}}}
        ),
        "ttl_s": 3600,
    },
    {
        "sid": "hash-json-roles-session-000020",
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": "9"}}),
        "ttl_s": 3600,
    },
    {
        "sid": "cookie-not-object-session-0021",
        "value": stored({"cookie": "x", "passport": {"user": "42"}}),
        "ttl_s": 3600,
    },
    {
        "sid": "large-number-id-session-000022",
        # Written as JSON.stringify would write it: the integer's exact digits.
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": 12345678901234567890}}),
        "ttl_s": 3600,
    },
    {
        "sid": "too-large-session-00000000000023",
        # Over SESSIONVALIDATOR_MAX_SESSION_BYTES (4096 in these settings): never read.
        "value": stored({"cookie": LIVE_COOKIE, "passport": {"user": "42"}, "cart": "x" * 5000}),
        "ttl_s": 3600,
    },
    {
        "sid": "secret-fields-user-session-00024",
        # Passport apps that serialize the whole user document: the secrets never reach callers.
        "value": stored(
            {
                "cookie": LIVE_COOKIE,
                "passport": {
                    "user": {
                        "id": "u-24",
                        "username": "sec",
                        "passwordHash": "$2b$10$abcdefghijklmnopqrstuv",
                        "salt": "NaCl",
                        "profile": {"plan": "pro", "api_key": "k-123", "Reset-Token": "t-456"},
                        "sessions": [{"device": "phone", "refreshToken": "r-789"}],
                        "SECRET": "s",
                    }
                },
            }
        ),
        "ttl_s": 3600,
    },
]
USERS: list[dict[str, Any]] = [
    {
        "key": "user:7",
        "type": "string",
        "value": stored({"id": 7, "username": "seven", "email": "seven@example.org", "role": "reader"}),
    },
    {
        "key": "user:8",
        "type": "hash",
        "value": {"id": "8", "username": "eight", "name": "Eight Hash", "roles": "ops,dev"},
    },
    {"key": "user:9", "type": "hash", "value": {"id": "9", "username": "nine", "roles": '["ops", "on-call"]'}},
]


def text(header: str) -> dict[str, str]:
    return {"cookie_header_text": header}


def raw(header: bytes) -> dict[str, str]:
    return {"cookie_header_b64": base64.b64encode(header).decode("ascii")}


def user(uid: str, **fields: Any) -> dict[str, Any]:
    return {"id": uid, **fields}


def case(name: str, request: dict[str, str], verdict: str, reason: str, **expect: Any) -> dict[str, Any]:
    return {"name": name, "request": request, "expect": {"verdict": verdict, "reason": reason, **expect}}


VALID = ("VERDICT_VALID", "REASON_SESSION_ACTIVE")
S1 = SESSIONS[0]["sid"]

CASES = [
    case(
        "valid_scalar_user",
        text(f"{NAME}={signed(S1)}"),
        *VALID,
        session_id=S1,
        authenticated=True,
        secret_index=0,
        user=user("42"),
        has_expire_time=True,
    ),
    case(
        "valid_object_user",
        text(f"theme=dark; {NAME}={signed(SESSIONS[1]['sid'])}; lang=en"),
        *VALID,
        session_id=SESSIONS[1]["sid"],
        authenticated=True,
        secret_index=0,
        has_expire_time=True,
        user=user(
            "u-100", username="ann", display_name="Ann Example", email="ann@example.org", roles=["admin", "billing"]
        ),
    ),
    case(
        "valid_user_id_zero",
        text(f"{NAME}={signed(SESSIONS[2]['sid'])}"),
        *VALID,
        session_id=SESSIONS[2]["sid"],
        authenticated=True,
        user=user("0"),
    ),
    case(
        "valid_anonymous_session",
        text(f"{NAME}={signed(SESSIONS[3]['sid'])}"),
        *VALID,
        session_id=SESSIONS[3]["sid"],
        authenticated=False,
    ),
    case(
        "valid_logged_out_session",
        text(f"{NAME}={signed(SESSIONS[4]['sid'])}"),
        *VALID,
        session_id=SESSIONS[4]["sid"],
        authenticated=False,
    ),
    case(
        "valid_empty_string_user_is_anonymous",
        text(f"{NAME}={signed(SESSIONS[10]['sid'])}"),
        *VALID,
        session_id=SESSIONS[10]["sid"],
        authenticated=False,
    ),
    case(
        "valid_rotated_secret",
        text(f"{NAME}={signed(S1, 1)}"),
        *VALID,
        session_id=S1,
        authenticated=True,
        secret_index=1,
        user=user("42"),
    ),
    case("valid_raw_bytes_header", raw(f"{NAME}={signed(S1)}".encode()), *VALID, session_id=S1, authenticated=True),
    case("valid_signed_value_encoded", {"signed_value": signed(S1)}, *VALID, session_id=S1, authenticated=True),
    case(
        "valid_signed_value_unencoded",
        {"signed_value": "s:" + SIGNER.sign(S1)},
        *VALID,
        session_id=S1,
        authenticated=True,
    ),
    case("valid_quoted_value", text(f'{NAME}="{signed(S1)}"'), *VALID, session_id=S1),
    case("valid_spaces_around_pair", text(f"a=1;  {NAME} = {signed(S1)} ;b=2"), *VALID, session_id=S1),
    case("valid_first_duplicate_wins", text(f"{NAME}={signed(S1)}; {NAME}=garbage"), *VALID, session_id=S1),
    case(
        "valid_dotted_session_id",
        text(f"{NAME}={signed('a.b.c')}"),
        *VALID,
        session_id="a.b.c",
        authenticated=True,
        user=user("dotted"),
    ),
    case(
        "valid_latin1_byte_session_id",
        raw(f"{NAME}=s:\u00e9.".encode("latin-1") + SIGNER.sign("\u00e9").split(".", 1)[1].encode()),
        *VALID,
        session_id="\u00e9",
        authenticated=True,
        user=user("latin"),
    ),
    case(
        "valid_user_record_json",
        text(f"{NAME}={signed(SESSIONS[8]['sid'])}"),
        *VALID,
        session_id=SESSIONS[8]["sid"],
        authenticated=True,
        user=user("7", username="seven", email="seven@example.org", roles=["reader"]),
    ),
    case(
        "valid_user_record_hash",
        text(f"{NAME}={signed(SESSIONS[9]['sid'])}"),
        *VALID,
        session_id=SESSIONS[9]["sid"],
        authenticated=True,
        user=user("8", username="eight", display_name="Eight Hash", roles=["ops", "dev"]),
    ),
    case(
        "bad_signature_tampered",
        text(f"{NAME}={signed(S1)[:-1]}A"),
        "VERDICT_BAD_SIGNATURE",
        "REASON_SIGNATURE_MISMATCH",
        authenticated=False,
    ),
    case(
        "bad_signature_padding_added",
        text(f"{NAME}={signed(S1)}%3D"),
        "VERDICT_BAD_SIGNATURE",
        "REASON_SIGNATURE_MISMATCH",
    ),
    case(
        "bad_signature_unknown_secret",
        text(f"{NAME}=s%3Aapple.D8Y%2BpkTAmeR0PobOhY4G97PRW%2Bj7bUnP%2F5m6%2FOn1MCU"),
        "VERDICT_BAD_SIGNATURE",
        "REASON_SIGNATURE_MISMATCH",
    ),
    case(
        "bad_signature_utf8_bytes_seen_as_latin1",
        raw(f"{NAME}=s:".encode() + "\u00e9".encode() + b"." + SIGNER.sign("\u00e9").split(".", 1)[1].encode()),
        "VERDICT_BAD_SIGNATURE",
        "REASON_SIGNATURE_MISMATCH",
    ),
    case("malformed_not_signed", text(f"{NAME}={S1}"), "VERDICT_MALFORMED", "REASON_NOT_SIGNED"),
    case("malformed_uppercase_prefix", text(f"{NAME}=S%3A{SIGNER.sign(S1)}"), "VERDICT_MALFORMED", "REASON_NOT_SIGNED"),
    case(
        "malformed_first_duplicate_wins",
        text(f"{NAME}=garbage; {NAME}={signed(S1)}"),
        "VERDICT_MALFORMED",
        "REASON_NOT_SIGNED",
    ),
    case(
        "malformed_empty_session_id",
        text(f"{NAME}={signed('')}"),
        "VERDICT_MALFORMED",
        "REASON_EMPTY_SESSION_ID",
        session_id="",
        secret_index=0,
    ),
    case(
        "malformed_too_large", text(f"{NAME}={signed(S1)}; pad={'x' * 16384}"), "VERDICT_MALFORMED", "REASON_TOO_LARGE"
    ),
    case(
        "malformed_corrupt_stored_session",
        text(f"{NAME}={signed(SESSIONS[6]['sid'])}"),
        "VERDICT_MALFORMED",
        "REASON_CORRUPT_SESSION",
        session_id=SESSIONS[6]["sid"],
    ),
    case(
        "malformed_stored_session_without_cookie",
        text(f"{NAME}={signed(SESSIONS[7]['sid'])}"),
        "VERDICT_MALFORMED",
        "REASON_CORRUPT_SESSION",
        session_id=SESSIONS[7]["sid"],
    ),
    case(
        "expired_session_without_ttl",
        text(f"{NAME}={signed(SESSIONS[5]['sid'])}"),
        "VERDICT_EXPIRED",
        "REASON_SESSION_EXPIRED",
        session_id=SESSIONS[5]["sid"],
        authenticated=False,
        has_expire_time=True,
    ),
    case(
        "missing_unknown_session",
        text(f"{NAME}={signed('no-such-session-in-the-store-0000')}"),
        "VERDICT_MISSING",
        "REASON_SESSION_NOT_FOUND",
        session_id="no-such-session-in-the-store-0000",
    ),
    case("missing_empty_header", text(""), "VERDICT_MISSING", "REASON_NO_COOKIE"),
    case("missing_empty_request", {}, "VERDICT_MISSING", "REASON_NO_COOKIE"),
    case("missing_other_cookies_only", text("theme=dark; lang=en"), "VERDICT_MISSING", "REASON_COOKIE_NOT_FOUND"),
    case(
        "missing_name_is_case_sensitive",
        text(f"Connect.sid={signed(S1)}"),
        "VERDICT_MISSING",
        "REASON_COOKIE_NOT_FOUND",
    ),
    case("missing_empty_value", text(f"{NAME}=; theme=dark"), "VERDICT_MISSING", "REASON_EMPTY_VALUE"),
    case("missing_empty_signed_value", {"signed_value": ""}, "VERDICT_MISSING", "REASON_EMPTY_VALUE"),
    case(
        "malformed_session_key_of_another_type",
        text(f"{NAME}={signed(SESSIONS[13]['sid'])}"),
        "VERDICT_MALFORMED",
        "REASON_CORRUPT_SESSION",
        session_id=SESSIONS[13]["sid"],
    ),
    case(
        "malformed_cookie_field_not_an_object",
        text(f"{NAME}={signed(SESSIONS[20]['sid'])}"),
        "VERDICT_MALFORMED",
        "REASON_CORRUPT_SESSION",
    ),
    case(
        "missing_stored_null_is_no_session",
        text(f"{NAME}={signed(SESSIONS[14]['sid'])}"),
        "VERDICT_MISSING",
        "REASON_SESSION_NOT_FOUND",
        session_id=SESSIONS[14]["sid"],
    ),
    case(
        "missing_stored_zero_is_no_session",
        text(f"{NAME}={signed(SESSIONS[15]['sid'])}"),
        "VERDICT_MISSING",
        "REASON_SESSION_NOT_FOUND",
    ),
    case(
        "valid_no_ttl_future_expiry",
        text(f"{NAME}={signed(SESSIONS[16]['sid'])}"),
        *VALID,
        session_id=SESSIONS[16]["sid"],
        authenticated=True,
        has_expire_time=True,
    ),
    case(
        "valid_no_ttl_browser_session_never_expires",
        text(f"{NAME}={signed(SESSIONS[17]['sid'])}"),
        *VALID,
        authenticated=False,
        has_expire_time=False,
    ),
    case(
        "valid_underscore_id_user",
        text(f"{NAME}={signed(SESSIONS[18]['sid'])}"),
        *VALID,
        authenticated=True,
        user=user("6512bd43d9caa6e0", username="mongo"),
    ),
    case(
        "valid_user_record_hash_with_json_roles",
        text(f"{NAME}={signed(SESSIONS[19]['sid'])}"),
        *VALID,
        authenticated=True,
        user=user("9", username="nine", roles=["ops", "on-call"]),
    ),
    case(
        "malformed_stored_session_over_the_size_limit",
        text(f"{NAME}={signed(SESSIONS[22]['sid'])}"),
        "VERDICT_MALFORMED",
        "REASON_SESSION_TOO_LARGE",
        session_id=SESSIONS[22]["sid"],
    ),
    case(
        "valid_user_object_secrets_left_out_of_attributes",
        text(f"{NAME}={signed(SESSIONS[23]['sid'])}"),
        *VALID,
        authenticated=True,
        user=user("u-24", username="sec"),
        # The whole of UserProfile.attributes under the default policy.
        attributes={"id": "u-24", "username": "sec", "profile": {"plan": "pro"}, "sessions": [{"device": "phone"}]},
    ),
    case(
        "valid_number_id_beyond_2_53_as_javascript_prints_it",
        text(f"{NAME}={signed(SESSIONS[21]['sid'])}"),
        *VALID,
        authenticated=True,
        user=user("12345678901234567000"),
    ),
]


def main() -> None:
    corpus = {
        "description": "Shared SessionValidator vectors: seed `sessions` and `users` into Redis, run the service "
        "with these settings, send each case's request and compare with `expect` (fields absent from `expect` "
        "are not checked).",
        "settings": {
            "SESSIONVALIDATOR_SECRETS": json.dumps(SECRETS),
            "SESSIONVALIDATOR_COOKIE_NAME": NAME,
            "SESSIONVALIDATOR_KEY_PREFIX": "sess:",
            "SESSIONVALIDATOR_USER_KEY": "user:{id}",
            "SESSIONVALIDATOR_MAX_SESSION_BYTES": "4096",
        },
        "sessions": [{**s, "key": "sess:" + s["sid"]} for s in SESSIONS],
        "users": USERS,
        "cases": CASES,
    }
    path = Path(__file__).with_name("validate_session.json")
    path.write_text(json.dumps(corpus, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
