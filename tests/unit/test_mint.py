"""Minted sessions are byte-for-byte what express-session + connect-redis write."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sessionvalidator_service.cookies import find_cookie
from sessionvalidator_service.domain import read_credential
from sessionvalidator_service.mint import encode_uri_component, js_iso, mint_session, new_session_id
from sessionvalidator_service.signature import Signer

SIGNER = Signer(["keyboard cat"])
NOW = datetime(2026, 11, 22, 10, 47, 40, 90000, tzinfo=UTC)


def test_stored_json_has_express_sessions_layout() -> None:
    session = mint_session(SIGNER, user="6512bd43d9caa6e02c990b0a", max_age_s=86400, session_id="apple", now=NOW)
    assert session.stored_json == (
        '{"cookie":{"originalMaxAge":86400000,"expires":"2026-11-23T10:47:40.090Z","httpOnly":true,"path":"/"},'
        '"passport":{"user":"6512bd43d9caa6e02c990b0a"}}'
    )
    assert session.ttl_s == 86400
    assert session.cookie_value == "s%3Aapple.D8Y%2BpkTAmeR0PobOhY4G97PRW%2Bj7bUnP%2F5m6%2FOn1MCU"


def test_browser_session_cookie_uses_connect_redis_default_ttl() -> None:
    session = mint_session(SIGNER, user=42, max_age_s=None, now=NOW)
    assert json.loads(session.stored_json)["cookie"] == {
        "originalMaxAge": None,
        "expires": None,
        "httpOnly": True,
        "path": "/",
    }
    assert session.ttl_s == 86400


def test_minted_cookie_round_trips_through_the_parser() -> None:
    session = mint_session(SIGNER, user={"id": 1}, now=NOW)
    header = session.cookie_header("connect.sid")
    assert find_cookie(header, "connect.sid") == "s:" + SIGNER.sign(session.session_id)
    assert read_credential(SIGNER, "connect.sid", header=header).session_id == session.session_id


def test_session_ids_are_uid_safe_shaped() -> None:
    sid = new_session_id()
    assert len(sid) == 32
    assert set(sid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_encode_uri_component_and_iso() -> None:
    assert encode_uri_component("s:a+b/c é!~*'()") == "s%3Aa%2Bb%2Fc%20%C3%A9!~*'()"
    assert js_iso(datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
