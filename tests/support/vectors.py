"""The shared vectors (tests/vectors/validate_session.json): requests, expectations, seeding an in-memory store."""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import json_format

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator_service.jsemu import parse_json
from sessionvalidator_service.stores import StoredSession
from sessionvalidator_service.stores.memory import MemoryStore


def needs_store(case: dict[str, Any]) -> bool:
    """Whether the service must read the store to answer this vector."""
    return case["expect"]["verdict"] in {"VERDICT_VALID", "VERDICT_EXPIRED"} or case["expect"]["reason"] in {
        "REASON_SESSION_NOT_FOUND",
        "REASON_CORRUPT_SESSION",
        "REASON_SESSION_TOO_LARGE",
        "REASON_SESSION_ENCRYPTED",
    }


def request_of(case: dict[str, Any]) -> pb.ValidateSessionRequest:
    """The request a case sends."""
    spec = case["request"]
    if "cookie_header_b64" in spec:
        return pb.ValidateSessionRequest(cookie_header=base64.b64decode(spec["cookie_header_b64"]))
    return pb.ValidateSessionRequest(**spec)


def check_vector(response: pb.ValidateSessionResponse, expect: dict[str, Any]) -> None:
    """Assert that ``response`` is what the case expects (fields absent from ``expect`` are not checked)."""
    assert pb.Verdict.Name(response.verdict) == expect["verdict"]
    assert pb.Reason.Name(response.reason) == expect["reason"]
    assert response.cookie_name == "connect.sid"
    assert not response.HasField("error")
    if "session_id" in expect:
        assert response.session_id == expect["session_id"]
    if "authenticated" in expect:
        assert response.authenticated is expect["authenticated"]
        if not expect["authenticated"]:
            assert not response.HasField("user")
    if "secret_index" in expect:
        assert response.HasField("secret_index")
        assert response.secret_index == expect["secret_index"]
    if "has_expire_time" in expect:
        assert response.HasField("expire_time") is expect["has_expire_time"]
    if "user" in expect:
        user = expect["user"]
        assert response.user.id == user["id"]
        for field in ("username", "display_name", "email"):
            assert getattr(response.user, field) == user.get(field, "")
        assert list(response.user.roles) == user.get("roles", [])
    if "attributes" in expect:
        assert json_format.MessageToDict(response.user.attributes) == expect["attributes"]


def seed_memory(store: MemoryStore, corpus: dict[str, Any]) -> None:
    """Hold the corpus's sessions and user records as the Redis store would read them back."""
    prefix = corpus["settings"]["SESSIONVALIDATOR_KEY_PREFIX"]
    limit = int(corpus["settings"].get("SESSIONVALIDATOR_MAX_SESSION_BYTES", 1 << 20))
    for session in corpus["sessions"]:
        assert session["key"] == prefix + session["sid"]
        ttl_ms = None if session["ttl_s"] is None else session["ttl_s"] * 1000
        if session.get("type") == "hash":
            stored = StoredSession(None, unusable="wrong_type")
        elif len(session["value"].encode("utf-8")) > limit:
            stored = StoredSession(None, unusable="too_large")
        else:
            stored = StoredSession(session["value"].encode("utf-8"))
        store.put(session["sid"], stored, ttl_ms=ttl_ms)
    template = corpus["settings"]["SESSIONVALIDATOR_USER_KEY"]
    head, _, tail = template.partition("{id}")
    for user in corpus["users"]:
        user_id = user["key"].removeprefix(head).removesuffix(tail)
        value = user["value"]
        store.put_user(user_id, dict(value) if user["type"] == "hash" else parse_json(value.encode("utf-8")))
