"""Per-peer limits on bad attempts (bad signatures and malformed cookies).

Each identity has a token bucket that only bad attempts drain. What happens
when it is empty depends on what the identity names:

* a *client*, named by a metadata header that a trusted gateway sets
  (``SESSIONVALIDATOR_RATE_LIMIT_PEER_HEADER``): every call for that client
  is refused with RESOURCE_EXHAUSTED until the bucket refills, like a
  fail2ban ban;
* a *transport peer* (the caller's address, the default): only its further
  bad attempts are refused. A peer is usually a gateway or a backend that
  speaks for many users; blocking it outright would lock out every user
  behind it whenever some of them send stale cookies (after a secret is
  removed, say).

Buckets live in a bounded LRU, so spoofed identities cannot grow memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sessionvalidator_service.domain import Reason

__all__ = ["BAD_ATTEMPTS", "Identity", "PeerLimiter", "RateLimit", "identity_of", "peer_address"]

# What an identity may only do so often: cookies that fail on their own.
BAD_ATTEMPTS = frozenset({Reason.SIGNATURE_MISMATCH, Reason.NOT_SIGNED, Reason.EMPTY_SESSION_ID, Reason.TOO_LARGE})


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a bad attempt is charged to.

    ``client`` is true when a trusted gateway named the end client: an empty
    bucket then refuses every call (a ban). Otherwise the identity is a
    transport peer and only its further bad attempts are refused.
    """

    key: str
    client: bool

    @property
    def scope(self) -> str:
        """``client`` or ``peer``, as ErrorInfo metadata and logs name it."""
        return "client" if self.client else "peer"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Bad attempts allowed per second, and how many may come at once."""

    per_second: float
    burst: int


class PeerLimiter:
    """Token buckets keyed by identity, drained by bad attempts only."""

    __slots__ = ("_buckets", "_burst", "_clock", "_max_identities", "_rate")

    def __init__(
        self,
        limit: RateLimit,
        *,
        max_identities: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = limit.per_second
        self._burst = float(limit.burst)
        self._max_identities = max_identities
        self._clock = clock
        # identity -> [tokens, last update]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def tracking(self) -> bool:
        """Whether any identity has spent tokens (fast path: nothing to check)."""
        return bool(self._buckets)

    def _tokens(self, bucket: list[float], now: float) -> float:
        return min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)

    def retry_after(self, identity: str) -> float | None:
        """Seconds until ``identity`` may make a bad attempt again, or ``None`` if it may now."""
        bucket = self._buckets.get(identity)
        if bucket is None:
            return None
        tokens = self._tokens(bucket, self._clock())
        return None if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def charge(self, identity: str) -> None:
        """Spend one token for a bad attempt by ``identity``."""
        now = self._clock()
        bucket = self._buckets.get(identity)
        if bucket is None:
            bucket = [self._burst, now]
            self._buckets[identity] = bucket
            if len(self._buckets) > self._max_identities:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(identity)
        bucket[0] = self._tokens(bucket, now) - 1.0
        bucket[1] = now


def identity_of(peer: str, forwarded_for: str | None) -> Identity:
    """Return the identity of a caller: the client a trusted gateway names, else the transport peer.

    ``forwarded_for`` is the value of ``SESSIONVALIDATOR_RATE_LIMIT_PEER_HEADER``
    when configured and sent; like X-Forwarded-For its first entry is the client.
    """
    if forwarded_for is not None and forwarded_for.strip():
        return Identity("client:" + forwarded_for.split(",", 1)[0].strip()[:256], client=True)
    return Identity("peer:" + peer_address(peer), client=False)


def peer_address(peer: str) -> str:
    """Return the address part of a gRPC peer string: ``ipv4:10.0.0.1:5000`` -> ``10.0.0.1``."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer
