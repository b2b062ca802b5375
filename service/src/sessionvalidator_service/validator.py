"""The validation core: credentials in, outcomes out, free of gRPC and HTTP.

Every front end (the gRPC ``SessionValidator`` service, Envoy's ext_authz,
the HTTP forward-auth endpoint) adapts a :class:`Validator`. It applies the
domain rules (:mod:`.domain`), the bad-attempt policy (:mod:`.ratelimit`),
the profile rules (:mod:`.profile`) and the bound on work in progress, and
reads the store. A store that cannot answer raises a StoreError: the caller
turns it into UNAVAILABLE or a 503, never a verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from sessionvalidator_service.domain import (
    Credential,
    ParsedSession,
    Reason,
    UserRecord,
    judge_stored,
    parse_session,
    read_credential,
)
from sessionvalidator_service.logs import LogBudget, SessionIdHasher
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.overload import LoopLag
from sessionvalidator_service.profile import AttributePolicy, Profile, build_profile
from sessionvalidator_service.ratelimit import BAD_ATTEMPTS, Identity, PeerLimiter, RateLimit
from sessionvalidator_service.signature import Signer
from sessionvalidator_service.stores import SessionStore, StoredSession, StoreTimeoutError, UserRecordData

if TYPE_CHECKING:
    from sessionvalidator_service.tracing import Tracing

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "UNREAD_WHEN_LIMITED",
    "CredentialInput",
    "Outcome",
    "OverloadedError",
    "RateLimitedError",
    "Validator",
]

log = logging.getLogger("sessionvalidator.validate")

MAX_BATCH = 256
# A batch carries at most this many credential bytes in all.
MAX_BATCH_BYTES = 1024 * 1024
# While an identity has no bad attempts left, credentials longer than this (a
# browser keeps a cookie under 4 KiB) are refused without being decoded or
# verified: a flood of large refused values costs the flooder, not the server.
UNREAD_WHEN_LIMITED = 4096
# Stored sessions up to this size are parsed once per distinct value, for up to
# this many distinct values (then the cache starts afresh).
CACHED_SESSION_BYTES = 8192
CACHED_SESSIONS = 4096
# Credentials whose signature verified are remembered, by their exact text, for
# up to this many distinct texts (then it starts afresh) and until the secrets
# change: a client sends the same cookie again and again.
VERIFIED_CREDENTIALS = 8192

# ("header", latin-1 text of the Cookie header) or ("value", the bare cookie value).
CredentialInput = tuple[Literal["header", "value"], str]
NO_CREDENTIAL: CredentialInput = ("header", "")


class RateLimitedError(Exception):
    """The whole call is refused: an identity out of bad attempts (a client ban)."""

    def __init__(self, retry_after_s: float, scope: str) -> None:
        super().__init__(f"rate limited ({scope}); retry in {retry_after_s:.3f} s")
        self.retry_after_s = retry_after_s
        self.scope = scope


class OverloadedError(Exception):
    """The validator is over its bound on work in progress."""


@dataclass(slots=True)
class Outcome:
    """The answer for one credential.

    ``reason`` is ``None`` only for a credential refused on its own (a bad
    attempt while its identity has none left): ``retry_after_s`` then says
    when it may be tried again.
    """

    reason: Reason | None
    credential: Credential
    expire_time: datetime | None = None
    user: UserRecord | None = None
    profile: Profile | None = None
    retry_after_s: float | None = None
    scope: str = ""

    @property
    def authenticated(self) -> bool:
        """A live session with a logged-in Passport user."""
        return self.user is not None


_NO_SESSION = Credential(None)


class Validator:
    """Judges credentials exactly as express-session would (see the module docstring)."""

    def __init__(
        self,
        *,
        secrets: tuple[str, ...],
        store: SessionStore,
        cookie_name: str,
        metrics: Metrics,
        rate_limit: RateLimit | None = None,
        attribute_policy: AttributePolicy = AttributePolicy(),  # noqa: B008 - frozen, shared safely
        max_in_flight: int = 0,
        loop_lag: LoopLag | None = None,
        store_timeout_s: float = 0.1,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tracing: Tracing | None = None,
    ) -> None:
        self._signer = Signer(secrets)
        self._hasher = SessionIdHasher(secrets[0])
        self._store = store
        self._cookie_name = cookie_name
        self._metrics = metrics
        self._limiter = PeerLimiter(rate_limit) if rate_limit is not None else None
        self._policy = attribute_policy
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._lag = loop_lag
        # A loop this late makes a store timeout the server's fault, not the store's.
        self._late_s = store_timeout_s / 2
        self._clock = clock
        self._tracing = tracing
        self._logs = LogBudget(log)
        self._cache: dict[bytes, tuple[ParsedSession, Profile | None]] = {}
        self._verified: dict[CredentialInput, Credential] = {}

    @property
    def cookie_name(self) -> str:
        """The configured cookie name."""
        return self._cookie_name

    @property
    def hasher(self) -> SessionIdHasher:
        """Tags session ids for logs and headers without revealing them."""
        return self._hasher

    def use_secrets(self, secrets: tuple[str, ...]) -> None:
        """Verify with ``secrets`` from the next call on (rotation, kill switch).

        One reference swap: a call already past verification keeps its
        answer, every later call sees only the new list, so removing a secret
        invalidates its cookies at once.
        """
        self._signer = Signer(secrets)
        self._hasher = SessionIdHasher(secrets[0])
        self._verified = {}  # verified with the old list: verify again

    # ------------------------------------------------------------ admission

    def _enter(self, identity: Identity | None) -> None:
        """Refuse a call before any work: over the in-flight bound, or from a banned client."""
        if self._max_in_flight and self._in_flight >= self._max_in_flight:
            self._metrics.overloaded("in_flight")
            self._logs.warning("overloaded", "over the bound on calls in progress; refusing with UNAVAILABLE")
            raise OverloadedError
        if identity is not None and identity.client and self._limiter is not None and self._limiter.tracking:
            wait = self._limiter.retry_after(identity.key)
            if wait is not None:
                self._rate_limited(identity)
                raise RateLimitedError(wait, identity.scope)
        self._in_flight += 1

    def _timed_out(self, exc: StoreTimeoutError) -> Exception:
        """Return what a store timeout means: the store's slowness, or the server's own overload (a late loop)."""
        if self._lag is not None and self._lag.recent_s() >= self._late_s:
            self._metrics.overloaded("event_loop")
            self._logs.warning(
                "overloaded",
                "store timeout while the event loop ran late: the server is overloaded",
                cause="event_loop",
            )
            return OverloadedError("the event loop ran too late to time the store")
        return exc

    async def _sessions(self, session_ids: list[str]) -> list[StoredSession]:
        """Read sessions: from the store's cache when it has them (no round trip, no suspension), else from it."""
        store = self._store
        if not store.caches:
            if len(session_ids) == 1:
                return [await self._lookup(session_ids)]
            return await self._lookup_many(session_ids)
        peek = store.peek
        if len(session_ids) == 1:
            cached = peek(session_ids[0])
            self._metrics.cache_lookups(cached is not None, cached is None)
            if cached is not None:
                return [cached]
            return [await self._lookup(session_ids)]
        found = [peek(session_id) for session_id in session_ids]
        missing = [session_id for session_id, stored in zip(session_ids, found, strict=True) if stored is None]
        self._metrics.cache_lookups(len(found) - len(missing), len(missing))
        if missing:
            read = iter(await self._lookup_many(missing))
            found = [stored if stored is not None else next(read) for stored in found]
        return found  # type: ignore[return-value]  # every None was replaced above

    async def _lookup(self, session_ids: list[str]) -> StoredSession:
        try:
            return await self._store.get_session(session_ids[0])
        except StoreTimeoutError as exc:
            raise self._timed_out(exc) from exc

    async def _lookup_many(self, session_ids: list[str]) -> list[StoredSession]:
        try:
            return await self._store.get_sessions(session_ids)
        except StoreTimeoutError as exc:
            raise self._timed_out(exc) from exc

    async def _users(self, user_ids: list[str]) -> list[UserRecordData | None]:
        try:
            return await self._store.get_users(user_ids)
        except StoreTimeoutError as exc:
            raise self._timed_out(exc) from exc

    def _rate_limited(self, identity: Identity) -> None:
        self._metrics.rate_limited.inc()
        self._logs.warning(
            "rate_limited", "too many bad cookies; refusing with RESOURCE_EXHAUSTED", scope=identity.scope
        )

    def _read(self, item: CredentialInput, identity: Identity | None, limited: bool) -> Credential | float:
        """Read one credential, or return the seconds to wait when it is refused unread."""
        kind, text = item
        if limited and len(text) > UNREAD_WHEN_LIMITED:
            assert self._limiter is not None  # noqa: S101 - limited implies a limiter
            assert identity is not None  # noqa: S101 - and an identity
            return self._limiter.retry_after(identity.key) or 0.0
        known = self._verified.get(item)
        if known is not None:
            return known
        signer = self._signer
        if kind == "header":
            credential = read_credential(signer, self._cookie_name, header=text)
        else:
            credential = read_credential(signer, self._cookie_name, value=text)
        # Only a signature that verified is remembered, and only while these secrets are in use (a
        # rotation or the kill switch swaps the whole dictionary); nothing else would be worth it.
        if credential.reason is None and signer is self._signer and len(text) <= UNREAD_WHEN_LIMITED:
            verified = self._verified
            if len(verified) >= VERIFIED_CREDENTIALS:
                verified.clear()
            verified[item] = credential
        return credential

    def _charge(self, credential: Credential, identity: Identity | None) -> float | None:
        """Count a bad attempt; return the seconds to wait when the identity has none left."""
        if self._limiter is None or identity is None or credential.reason not in BAD_ATTEMPTS:
            return None
        wait = self._limiter.retry_after(identity.key)
        if wait is not None:
            return wait
        self._limiter.charge(identity.key)
        return None

    def _limited(self, identity: Identity | None) -> bool:
        return (
            identity is not None
            and self._limiter is not None
            and self._limiter.tracking
            and self._limiter.retry_after(identity.key) is not None
        )

    # ------------------------------------------------------------ judging

    def _early(self, credential: Credential, identity: Identity | None) -> Outcome:
        """Answer a credential that the cookie alone decides, counting a bad attempt."""
        wait = self._charge(credential, identity)
        if wait is not None:
            assert identity is not None  # noqa: S101 - a wait implies an identity
            self._rate_limited(identity)
            return Outcome(None, credential, retry_after_s=wait, scope=identity.scope)
        reason = credential.reason
        assert reason is not None  # noqa: S101 - callers check
        self._metrics.judged(reason, credential.secret_index)
        if reason is Reason.SIGNATURE_MISMATCH:
            # Who sent it (a transport address, or the client a trusted gateway named), never the cookie.
            who = {"peer": identity.key} if identity is not None else {}
            self._logs.warning("bad_signature", "cookie signature rejected", **who)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("cookie rejected", extra={"event": "rejected", "reason": reason.label})
        return Outcome(reason, credential)

    def _parsed(self, stored: StoredSession) -> tuple[ParsedSession | None, Profile | None]:
        """Parse a stored session, and build the profile of a user stored in it, once per distinct value.

        Both are pure functions of the stored bytes (expiry is judged per call
        from the TTL and the clock), so identical sessions, which every
        session is between two requests of its user, are read once. The
        cache is bounded in entries and in the size of what it keeps.
        """
        data = stored.data
        if not isinstance(data, bytes) or stored.unusable is not None or not data:
            return None, None
        cached = self._cache.get(data)
        if cached is not None:
            return cached
        parsed = parse_session(data)
        user = parsed.user
        profile = None
        if user is not None and (user.record is not None or not self._store.has_user_records):
            # The user object itself, or an id no store record completes: both are in the bytes.
            profile = build_profile(user, user.record, self._policy)
        if len(data) <= CACHED_SESSION_BYTES:
            if len(self._cache) >= CACHED_SESSIONS:
                self._cache.clear()
            self._cache[data] = (parsed, profile)
        return parsed, profile

    def _judge(self, credential: Credential, stored: StoredSession) -> Outcome:
        parsed, profile = self._parsed(stored)
        judgement = judge_stored(stored, self._clock(), parsed)
        reason = judgement.reason
        self._metrics.judged(reason, credential.secret_index)
        if reason is not Reason.SESSION_ACTIVE:
            self._log_unusable(reason, credential.session_id or "")
            return Outcome(reason, credential, judgement.expire_time)
        return Outcome(reason, credential, judgement.expire_time, judgement.user, profile)

    def _needs_record(self, outcome: Outcome) -> bool:
        return outcome.user is not None and outcome.user.record is None and self._store.has_user_records

    def _profile(self, outcome: Outcome, record: object = None) -> None:
        user = outcome.user
        if user is not None and outcome.profile is None:
            found = user.record if user.record is not None else record
            outcome.profile = build_profile(user, found if isinstance(found, dict) else None, self._policy)

    def _log_unusable(self, reason: Reason, session_id: str) -> None:
        if reason in {Reason.CORRUPT_SESSION, Reason.SESSION_TOO_LARGE, Reason.SESSION_ENCRYPTED}:
            self._logs.error(
                reason.label,
                "stored session is unusable; express-session would fail this request",
                sid_tag=self._hasher(session_id),
            )
        elif log.isEnabledFor(logging.INFO):
            log.info("session not usable", extra={"event": reason.label, "sid_tag": self._hasher(session_id)})

    async def validate(self, item: CredentialInput, identity: Identity | None) -> Outcome:
        """Judge one credential."""
        self._enter(identity)
        try:
            read = self._read(item, identity, self._limited(identity))
            if isinstance(read, float):
                assert identity is not None  # noqa: S101 - refused unread implies an identity
                self._rate_limited(identity)
                return Outcome(None, _NO_SESSION, retry_after_s=read, scope=identity.scope)
            if read.reason is not None:
                outcome = self._early(read, identity)
            else:
                (stored,) = await self._sessions([read.session_id or ""])
                outcome = self._judge(read, stored)
                if self._needs_record(outcome):
                    assert outcome.user is not None  # noqa: S101 - _needs_record checks
                    (record,) = await self._users([outcome.user.user_id])
                    self._profile(outcome, record)
                else:
                    self._profile(outcome)
            if self._tracing is not None:
                self._tracing.judged(outcome)
            return outcome
        finally:
            self._in_flight -= 1

    async def validate_many(self, items: Sequence[CredentialInput], identity: Identity | None) -> list[Outcome]:
        """Judge many credentials with one store round trip for all of them (identical ids read once)."""
        self._enter(identity)
        try:
            limited = self._limited(identity)
            outcomes: list[Outcome | None] = []
            lookups: dict[str, list[int]] = {}
            credentials: list[Credential] = []
            for index, item in enumerate(items):
                read = self._read(item, identity, limited)
                if isinstance(read, float):
                    assert identity is not None  # noqa: S101 - refused unread implies an identity
                    self._rate_limited(identity)
                    outcomes.append(Outcome(None, _NO_SESSION, retry_after_s=read, scope=identity.scope))
                elif read.reason is not None:
                    outcome = self._early(read, identity)
                    limited = limited or outcome.reason is None
                    outcomes.append(outcome)
                else:
                    lookups.setdefault(read.session_id or "", []).append(index)
                    outcomes.append(None)
                credentials.append(read if isinstance(read, Credential) else _NO_SESSION)
            if lookups:
                stored = await self._sessions(list(lookups))
                for session, indexes in zip(stored, lookups.values(), strict=True):
                    for index in indexes:
                        outcomes[index] = self._judge(credentials[index], session)
            done = [outcome for outcome in outcomes if outcome is not None]
            assert len(done) == len(outcomes)  # noqa: S101 - every credential was answered above
            pending = [outcome for outcome in done if self._needs_record(outcome)]
            if pending:
                records = await self._users([o.user.user_id for o in pending if o.user is not None])
                for outcome, record in zip(pending, records, strict=True):
                    self._profile(outcome, record)
            for outcome in done:
                self._profile(outcome)  # the user object itself, or an id without a record
            if self._tracing is not None:
                self._tracing.judged_many(done)
            return done
        finally:
            self._in_flight -= 1
