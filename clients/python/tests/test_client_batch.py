"""ValidateSessions through both clients: per-item verdicts and per-item errors."""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest

from sessionvalidator import AsyncClient, Client, RateLimitedError, StoreUnavailableError


def test_batch_gives_one_verdict_per_header(addr: str, valid_cookie: bytes, tampered_cookie: bytes) -> None:
    with Client(addr, timeout=5.0) as client:
        items = client.validate_cookie_headers([valid_cookie, tampered_cookie.decode("latin-1"), None])
    assert [(i.validation.verdict, i.error) for i in items] == [
        ("VERDICT_VALID", None),
        ("VERDICT_BAD_SIGNATURE", None),
        ("VERDICT_MISSING", None),
    ]
    assert items[0].validation.user is not None
    assert items[0].validation.user.id == "u-100"


def test_item_over_the_rate_limit_gets_its_own_error(valid_cookie: bytes, tampered_cookie: bytes) -> None:
    limited = os.environ.get("SESSIONVALIDATOR_TEST_LIMITED_ADDR") or pytest.fail("run through tests/harness.py")

    async def run() -> None:
        async with AsyncClient(limited, timeout=5.0) as client:
            items = await client.validate_cookie_headers([valid_cookie, tampered_cookie, tampered_cookie])
        assert items[0].error is None
        assert items[0].validation.valid
        last = items[2]
        assert isinstance(last.error, RateLimitedError)
        assert last.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert last.error.reason == "RATE_LIMITED"
        assert last.error.retry_delay is not None
        assert last.error.retry_delay > 0
        assert not last.validation.valid

    asyncio.run(run())


def test_store_outage_fails_the_whole_batch(down_addr: str, valid_cookie: bytes) -> None:
    with Client(down_addr, timeout=5.0) as client, pytest.raises(StoreUnavailableError):
        client.validate_cookie_headers([valid_cookie])
