"""Every shared vector case (tests/vectors/validate_session.json) through Client and AsyncClient."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from sessionvalidator import AsyncClient, Client, Validation

pytestmark = pytest.mark.integration

# The expect fields this test knows how to check; a new one must be taught here, not skipped.
KNOWN_EXPECT = {
    "verdict",
    "reason",
    "session_id",
    "authenticated",
    "secret_index",
    "user",
    "has_expire_time",
    "attributes",
}
KNOWN_USER = {"id", "username", "display_name", "email", "roles"}
KNOWN_REQUEST = {"cookie_header_text", "cookie_header_b64", "signed_value"}


def call_sync(client: Client, request: dict[str, Any]) -> Validation:
    """Send the case's credential the way a caller holding it would."""
    assert set(request) <= KNOWN_REQUEST, f"unknown request fields {set(request) - KNOWN_REQUEST}"
    if "cookie_header_text" in request:
        return client.validate_cookie_header(request["cookie_header_text"])
    if "cookie_header_b64" in request:
        return client.validate_cookie_header(base64.b64decode(request["cookie_header_b64"]))
    if "signed_value" in request:
        return client.validate_signed_value(request["signed_value"])
    return client.validate_cookie_header(None)


async def call_async(client: AsyncClient, request: dict[str, Any]) -> Validation:
    assert set(request) <= KNOWN_REQUEST, f"unknown request fields {set(request) - KNOWN_REQUEST}"
    if "cookie_header_text" in request:
        return await client.validate_cookie_header(request["cookie_header_text"])
    if "cookie_header_b64" in request:
        return await client.validate_cookie_header(base64.b64decode(request["cookie_header_b64"]))
    if "signed_value" in request:
        return await client.validate_signed_value(request["signed_value"])
    return await client.validate_cookie_header(None)


def check(validation: Validation, expect: dict[str, Any]) -> None:
    assert set(expect) <= KNOWN_EXPECT, f"unknown expect fields {set(expect) - KNOWN_EXPECT}"
    assert validation.verdict == expect["verdict"]
    assert validation.reason == expect["reason"]
    assert validation.valid is (expect["verdict"] == "VERDICT_VALID")
    if "session_id" in expect:
        assert validation.session_id == expect["session_id"]
    if "authenticated" in expect:
        assert validation.authenticated is expect["authenticated"]
    if "secret_index" in expect:
        assert validation.secret_index == expect["secret_index"]
    if "has_expire_time" in expect:
        assert (validation.expire_time is not None) is expect["has_expire_time"]
        if validation.expire_time is not None:
            assert validation.expire_time.tzinfo is UTC
            assert validation.expire_time > datetime(2000, 1, 1, tzinfo=UTC)
    if "attributes" in expect:
        assert validation.user is not None
        assert validation.user.attributes == expect["attributes"]
    if "user" in expect:
        want = expect["user"]
        assert set(want) <= KNOWN_USER, f"unknown user fields {set(want) - KNOWN_USER}"
        assert validation.user is not None
        for name, value in want.items():
            got = validation.user.roles if name == "roles" else getattr(validation.user, name)
            assert got == (tuple(value) if name == "roles" else value), name
    # The contract's invariants, whatever the case says.
    assert validation.cookie_name == "connect.sid"
    if validation.authenticated:
        assert validation.valid
        assert validation.user is not None
    else:
        assert validation.user is None


def test_vector_case_sync(addr: str, case: dict[str, Any]) -> None:
    with Client(addr) as client:
        check(call_sync(client, case["request"]), case["expect"])


def test_vector_case_async(addr: str, case: dict[str, Any]) -> None:
    async def run() -> Validation:
        async with AsyncClient(addr) as client:
            return await call_async(client, case["request"])

    check(asyncio.run(run()), case["expect"])


def test_vector_case_as_header_list(addr: str, header_case: dict[str, Any]) -> None:
    """Header cases again, as the one Cookie header among the headers of an ASGI scope."""
    request = header_case["request"]
    headers = [(b"host", b"example.org"), (b"accept", b"*/*")]
    if "cookie_header_text" in request:
        headers.insert(1, (b"cookie", request["cookie_header_text"].encode("latin-1")))
    elif "cookie_header_b64" in request:
        headers.insert(1, (b"cookie", base64.b64decode(request["cookie_header_b64"])))
    with Client(addr) as client:
        check(client.validate_headers(headers), header_case["expect"])
