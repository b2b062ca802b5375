"""Failures stay failures: store outages, deadlines and unreachable validators raise, never answer."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from sessionvalidator import (
    AsyncClient,
    Client,
    SessionValidatorError,
    StoreUnavailableError,
    ValidatorTimeoutError,
)

pytestmark = pytest.mark.integration


def test_store_down_raises_store_unavailable(down_addr: str, valid_cookie: bytes) -> None:
    with Client(down_addr) as client, pytest.raises(StoreUnavailableError) as caught:
        client.validate_cookie_header(valid_cookie)
    error = caught.value
    assert isinstance(error, SessionValidatorError)
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "STORE_UNAVAILABLE"
    assert error.domain == "sessionvalidator.v1"
    assert error.metadata.get("retryable") == "true"
    assert "STORE_UNAVAILABLE" in str(error)


def test_store_down_raises_store_unavailable_async(down_addr: str, valid_cookie: bytes) -> None:
    async def run() -> StoreUnavailableError:
        async with AsyncClient(down_addr) as client:
            with pytest.raises(StoreUnavailableError) as caught:
                await client.validate_headers([(b"cookie", valid_cookie)])
            return caught.value

    error = asyncio.run(run())
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "STORE_UNAVAILABLE"


def test_store_down_still_judges_what_needs_no_store(down_addr: str, tampered_cookie: bytes) -> None:
    """Only a store read can fail: a bad signature is decided before the store is asked."""
    with Client(down_addr) as client:
        assert client.validate_cookie_header(tampered_cookie).verdict == "VERDICT_BAD_SIGNATURE"
        assert client.validate_cookie_header(None).verdict == "VERDICT_MISSING"


def test_default_deadline_against_a_silent_server(silent_addr: str, valid_cookie: bytes) -> None:
    with Client(silent_addr) as client:
        assert client.timeout == 0.15
        started = time.monotonic()
        with pytest.raises(ValidatorTimeoutError) as caught:
            client.validate_cookie_header(valid_cookie)
        elapsed = time.monotonic() - started
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.reason is None
    assert elapsed < 2.0


def test_default_deadline_against_a_silent_server_async(silent_addr: str, valid_cookie: bytes) -> None:
    async def run() -> float:
        async with AsyncClient(silent_addr) as client:
            started = time.monotonic()
            with pytest.raises(ValidatorTimeoutError):
                await client.validate_cookie_header(valid_cookie)
            return time.monotonic() - started

    assert asyncio.run(run()) < 2.0


def test_per_call_timeout_overrides_the_default(silent_addr: str, valid_cookie: bytes) -> None:
    with Client(silent_addr, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(ValidatorTimeoutError):
            client.validate_cookie_header(valid_cookie, timeout=0.05)
    assert time.monotonic() - started < 2.0


def test_unreachable_validator_is_unavailable_without_reason(closed_addr: str, valid_cookie: bytes) -> None:
    with Client(closed_addr) as client, pytest.raises(StoreUnavailableError) as caught:
        client.validate_cookie_header(valid_cookie)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.reason is None


def test_async_client_opens_its_channel_in_the_running_loop(addr: str) -> None:
    """Built outside any loop (as at import time), used inside one; a second loop is refused."""
    client = AsyncClient(addr)

    async def use() -> bool:
        return (await client.validate_cookie_header(None)).verdict == "VERDICT_MISSING"

    try:
        assert asyncio.run(use())
        with pytest.raises(RuntimeError, match="event loop"):
            asyncio.run(use())
    finally:
        asyncio.run(client.aclose())
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(use())
