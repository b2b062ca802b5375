"""Token buckets for bad attempts, and the rate-limit settings."""

from __future__ import annotations

import pytest

from sessionvalidator_service.config import ConfigError, Settings
from sessionvalidator_service.ratelimit import PeerLimiter, RateLimit, peer_address

BASE = {"SESSIONVALIDATOR_SECRETS": "a-secret-that-is-long-enough-000000"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = PeerLimiter(RateLimit(per_second=2.0, burst=3), clock=clock)
    assert not limiter.tracking
    for _ in range(3):
        assert limiter.retry_after("a") is None
        limiter.charge("a")
    assert limiter.retry_after("a") == pytest.approx(0.5)  # one token takes 1/2 s
    assert limiter.retry_after("b") is None  # identities are independent
    clock.now += 0.25
    assert limiter.retry_after("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.retry_after("a") is None
    clock.now += 100
    for _ in range(3):  # refilled to the burst, never beyond
        limiter.charge("a")
    assert limiter.retry_after("a") is not None


def test_identities_are_bounded() -> None:
    limiter = PeerLimiter(RateLimit(1.0, 1), max_identities=2, clock=Clock())
    for name in ("a", "b", "c"):
        limiter.charge(name)
    assert limiter.retry_after("a") is None  # evicted, forgotten
    assert limiter.retry_after("c") is not None


@pytest.mark.parametrize(
    ("peer", "address"),
    [("ipv4:10.0.0.1:5000", "10.0.0.1"), ("ipv6:[::1]:443", "::1"), ("unix:/tmp/sock", "unix:/tmp/sock")],
)
def test_peer_address(peer: str, address: str) -> None:
    assert peer_address(peer) == address


def test_settings() -> None:
    assert Settings.from_env(BASE).rate_limit == RateLimit(100.0, 1000)
    assert Settings.from_env({**BASE, "SESSIONVALIDATOR_RATE_LIMIT": "off"}).rate_limit is None
    assert Settings.from_env({**BASE, "SESSIONVALIDATOR_RATE_LIMIT": "600/m"}).rate_limit == RateLimit(10.0, 100)
    limited = Settings.from_env(
        {**BASE, "SESSIONVALIDATOR_RATE_LIMIT": "5/s", "SESSIONVALIDATOR_RATE_LIMIT_BURST": "7"}
    )
    assert limited.rate_limit == RateLimit(5.0, 7)
    header = Settings.from_env({**BASE, "SESSIONVALIDATOR_RATE_LIMIT_PEER_HEADER": "X-Client-IP"})
    assert header.rate_limit_peer_header == "x-client-ip"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT", "fast"),
        ("RATE_LIMIT", "0/s"),
        ("RATE_LIMIT", "10/h"),
        ("RATE_LIMIT_BURST", "0"),
        ("RATE_LIMIT_PEER_HEADER", "grpc-timeout"),
        ("RATE_LIMIT_PEER_HEADER", "x bad"),
    ],
)
def test_bad_settings(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, "SESSIONVALIDATOR_" + name: value})
    assert caught.value.variable == "SESSIONVALIDATOR_" + name
