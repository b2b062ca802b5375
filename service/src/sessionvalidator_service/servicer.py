"""The gRPC adapter: protobuf in, domain rules, protobuf out."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol, TypeVar

import grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.cookies import header_from_bytes
from sessionvalidator_service.domain import (
    Credential,
    Reason,
    UserRecord,
    Verdict,
    judge_stored,
    parse_json,
    read_credential,
)
from sessionvalidator_service.errors import (
    abort_batch_too_large,
    abort_internal,
    abort_malformed_request,
    abort_rate_limited,
    abort_store,
)
from sessionvalidator_service.logs import SessionIdHasher
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.ratelimit import PeerLimiter, RateLimit, peer_address
from sessionvalidator_service.signature import Signer
from sessionvalidator_service.store import StoredSession, StoreError

__all__ = ["MAX_ATTRIBUTE_DEPTH", "MAX_BATCH", "REASONS", "VERDICTS", "SessionValidatorServicer", "build_profile"]

MAX_BATCH = 256
_T = TypeVar("_T")
# A user record nested deeper than this keeps its profile fields but is not
# copied into UserProfile.attributes.
MAX_ATTRIBUTE_DEPTH = 16
# What a peer may only do so often: cookies that fail on their own.
BAD_ATTEMPTS = frozenset({Reason.SIGNATURE_MISMATCH, Reason.NOT_SIGNED, Reason.EMPTY_SESSION_ID, Reason.TOO_LARGE})

log = logging.getLogger("sessionvalidator.validate")

VERDICTS: Mapping[Verdict, pb.Verdict.ValueType] = {
    Verdict.VALID: pb.VERDICT_VALID,
    Verdict.BAD_SIGNATURE: pb.VERDICT_BAD_SIGNATURE,
    Verdict.MALFORMED: pb.VERDICT_MALFORMED,
    Verdict.EXPIRED: pb.VERDICT_EXPIRED,
    Verdict.MISSING: pb.VERDICT_MISSING,
}
REASONS: Mapping[Reason, pb.Reason.ValueType] = {reason: pb.Reason.Value("REASON_" + reason.name) for reason in Reason}


def _strings(value: Any) -> list[str]:
    """Roles from a list of strings, a JSON list in a hash field, or a comma list."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, str) and value:
        if value.startswith("["):
            try:
                # parse_json: lone surrogates scrubbed, deep nesting refused.
                return _strings(parse_json(value.encode("utf-8", "surrogatepass")))
            except ValueError:
                pass
        return [part.strip() for part in value.split(",") if part.strip()]
    return []


def _struct_safe(value: Any) -> Any:
    """Make JSON that Struct cannot hold (huge integers) representable."""
    if isinstance(value, dict):
        return {str(k): _struct_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_struct_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return str(value)
    return value


def build_profile(user: UserRecord, record: Mapping[str, Any] | None) -> pb.UserProfile:
    """Turn a Passport user (and its record, if any) into a ``UserProfile``."""
    profile = pb.UserProfile(id=user.user_id)
    if record is None:
        return profile
    username = record.get("username")
    if isinstance(username, str):
        profile.username = username
    for key in ("displayName", "display_name", "name"):
        name = record.get(key)
        if isinstance(name, str):
            profile.display_name = name
            break
    email = record.get("email")
    if isinstance(email, str):
        profile.email = email
    else:
        emails = record.get("emails")
        if isinstance(emails, list) and emails and isinstance(emails[0], dict):
            first = emails[0].get("value")
            if isinstance(first, str):
                profile.email = first
    roles = record.get("roles")
    profile.roles.extend(_strings(roles) if roles is not None else _strings(record.get("role")))
    if _depth(record) > MAX_ATTRIBUTE_DEPTH:
        # Every level of a Struct is two protobuf messages deep: past this,
        # clients' parsers (limit 100) would refuse the whole response.
        return profile
    try:
        profile.attributes.update(record)
    except (ValueError, TypeError, OverflowError):
        profile.attributes.Clear()
        profile.attributes.update(_struct_safe(dict(record)))
    return profile


def _depth(value: Any) -> int:
    """How deeply ``value`` nests objects and arrays, counted without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            if level > MAX_ATTRIBUTE_DEPTH:
                break
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


class SessionLookup(Protocol):
    """What the servicer needs from a session store."""

    @property
    def has_user_records(self) -> bool: ...
    async def get_session(self, session_id: str) -> StoredSession: ...
    async def get_sessions(self, session_ids: list[str]) -> list[StoredSession]: ...
    async def get_user(self, user_id: str) -> Mapping[str, Any] | None: ...
    async def get_users(self, user_ids: list[str]) -> list[Mapping[str, Any] | None]: ...


class SessionValidatorServicer(pb_grpc.SessionValidatorServicer):
    """Answers ``ValidateSession`` with express-session's own decision."""

    def __init__(
        self,
        *,
        signer: Signer,
        store: SessionLookup,
        cookie_name: str,
        hasher: SessionIdHasher,
        metrics: Metrics,
        rate_limit: RateLimit | None = None,
        rate_limit_peer_header: str | None = None,
        retry_pushback: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._retry_pushback = retry_pushback
        self._metrics = metrics
        self._limiter = PeerLimiter(rate_limit) if rate_limit is not None else None
        self._peer_header = rate_limit_peer_header
        self._last_limit_log = 0.0
        self._signer = signer
        self._store = store
        self._cookie_name = cookie_name
        self._hasher = hasher
        self._clock = clock
        # Verdicts decided by the cookie alone carry no per-call data; they
        # are built once and serialized from the same message every time.
        self._fixed = {
            reason: pb.ValidateSessionResponse(
                verdict=VERDICTS[reason.verdict], reason=REASONS[reason], cookie_name=cookie_name
            )
            for reason in Reason
        }

    def use_secrets(self, secrets: tuple[str, ...]) -> None:
        """Verify with ``secrets`` from the next call on (rotation, kill switch).

        One reference swap: a call already past verification keeps its
        answer, every later call sees only the new list, so removing a secret
        invalidates its cookies at once.
        """
        self._signer = Signer(secrets)
        self._hasher = SessionIdHasher(secrets[0])

    def _response(self, reason: Reason, credential: Credential) -> pb.ValidateSessionResponse:
        self._metrics.judged(reason, credential.secret_index)
        if credential.session_id is None:
            return self._fixed[reason]
        return pb.ValidateSessionResponse(
            verdict=VERDICTS[reason.verdict],
            reason=REASONS[reason],
            session_id=credential.session_id,
            secret_index=credential.secret_index,
            cookie_name=self._cookie_name,
        )

    def _read(self, request: pb.ValidateSessionRequest) -> Credential:
        kind = request.WhichOneof("credential")
        if kind == "cookie_header":
            header = header_from_bytes(request.cookie_header)
            return read_credential(self._signer, self._cookie_name, header=header)
        if kind == "cookie_header_text":
            return read_credential(self._signer, self._cookie_name, header=request.cookie_header_text)
        if kind == "signed_value":
            return read_credential(self._signer, self._cookie_name, value=request.signed_value)
        # No credential at all is a request without a Cookie header.
        return read_credential(self._signer, self._cookie_name, header="")

    async def ValidateSession(  # noqa: N802 - gRPC method name
        self,
        request: pb.ValidateSessionRequest | None,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.ValidateSessionResponse:
        """Judge one credential; store failures end the call with UNAVAILABLE."""
        if request is None:  # not a protobuf message at all (see wire.py)
            await abort_malformed_request(context)
        with self._metrics.timed("ValidateSession"):
            return await self._guarded(context, self._validate_one(request, context))

    async def _validate_one(
        self, request: pb.ValidateSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ValidateSessionResponse:
        identity = await self._admit(context)
        credential = self._read(request)
        if credential.reason is not None:
            return await self._early(credential, context, identity)
        stored = await self._store.get_session(credential.session_id or "")
        response, pending = self._judge(credential, stored)
        if pending is not None:
            response.user.CopyFrom(build_profile(pending, await self._store.get_user(pending.user_id)))
        return response

    async def ValidateSessions(  # noqa: N802 - gRPC method name
        self,
        request: pb.ValidateSessionsRequest | None,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.ValidateSessionsResponse:
        """Judge many credentials with one store round trip for all of them."""
        if request is None:  # not a protobuf message at all (see wire.py)
            await abort_malformed_request(context)
        with self._metrics.timed("ValidateSessions"):
            if len(request.requests) > MAX_BATCH:
                await abort_batch_too_large(context, len(request.requests), MAX_BATCH)
            return await self._guarded(context, self._validate_many(request, context))

    async def _validate_many(
        self, request: pb.ValidateSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ValidateSessionsResponse:
        identity = await self._admit(context)
        credentials = [self._read(item) for item in request.requests]
        responses: list[pb.ValidateSessionResponse | None] = [None] * len(credentials)
        lookups: list[int] = []
        for index, credential in enumerate(credentials):
            if credential.reason is not None:
                responses[index] = await self._early(credential, context, identity)
            else:
                lookups.append(index)
        stored = await self._store.get_sessions([credentials[i].session_id or "" for i in lookups])
        pending: list[tuple[pb.ValidateSessionResponse, UserRecord]] = []
        for index, session in zip(lookups, stored, strict=True):
            response, user = self._judge(credentials[index], session)
            responses[index] = response
            if user is not None:
                pending.append((response, user))
        if pending:
            records = await self._store.get_users([user.user_id for _, user in pending])
            for (response, user), record in zip(pending, records, strict=True):
                response.user.CopyFrom(build_profile(user, record))
        answered = [response for response in responses if response is not None]
        assert len(answered) == len(responses)  # noqa: S101 - every credential was answered above
        return pb.ValidateSessionsResponse(responses=answered)

    async def _guarded(self, context: grpc.aio.ServicerContext[Any, Any], answer: Awaitable[_T]) -> _T:
        """Await ``answer``; a store failure ends the call UNAVAILABLE, a bug INTERNAL."""
        try:
            return await answer
        except grpc.aio.AbortError:
            raise
        except StoreError as exc:
            await self._store_failed(context, exc)
        except Exception:
            log.exception("validation failed unexpectedly", extra={"event": "internal_error"})
            await abort_internal(context)

    def _identity(self, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str, bool]:
        """Who is calling: (identity, whether it names a single client)."""
        if self._peer_header is not None:
            for key, value in context.invocation_metadata() or ():
                if key == self._peer_header and isinstance(value, str) and value.strip():
                    # A gateway's X-Forwarded-For style list: the first hop is the client.
                    return "client:" + value.split(",", 1)[0].strip()[:256], True
        return "peer:" + peer_address(context.peer()), False

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str, bool] | None:
        """Refuse a call from a banned client; return the caller's identity when limiting."""
        if self._limiter is None:
            return None
        identity = self._identity(context)
        if identity[1] and self._limiter.tracking:
            wait = self._limiter.retry_after(identity[0])
            if wait is not None:
                await self._refuse(context, wait, "client")
        return identity

    async def _charge(self, context: grpc.aio.ServicerContext[Any, Any], identity: tuple[str, bool]) -> None:
        """Count a bad attempt; refuse it when the identity has none left."""
        assert self._limiter is not None  # noqa: S101 - only called with a limiter
        wait = self._limiter.retry_after(identity[0])
        if wait is not None:
            await self._refuse(context, wait, "client" if identity[1] else "peer")
        self._limiter.charge(identity[0])

    async def _refuse(self, context: grpc.aio.ServicerContext[Any, Any], wait: float, scope: str) -> NoReturn:
        self._metrics.rate_limited.inc()
        now = time.monotonic()
        if now - self._last_limit_log >= 1.0:  # one line a second at most, whatever the flood
            self._last_limit_log = now
            log.warning(
                "too many bad cookies; refusing with RESOURCE_EXHAUSTED",
                extra={"event": "rate_limited", "scope": scope, "peer": context.peer()},
            )
        await abort_rate_limited(context, wait, scope)

    async def _store_failed(self, context: grpc.aio.ServicerContext[Any, Any], exc: StoreError) -> NoReturn:
        self._metrics.store_error(exc.reason)
        log.warning(
            "session store failed",
            extra={"event": "store_error", "error_reason": exc.reason, "error": exc.__class__.__name__},
        )
        await abort_store(context, exc, retry_pushback=self._retry_pushback)

    async def _early(
        self,
        credential: Credential,
        context: grpc.aio.ServicerContext[Any, Any],
        identity: tuple[str, bool] | None,
    ) -> pb.ValidateSessionResponse:
        """Answer a credential that the cookie alone decides, counting a bad attempt against ``identity``."""
        reason = credential.reason
        assert reason is not None  # noqa: S101 - callers check
        if reason in BAD_ATTEMPTS and identity is not None:
            await self._charge(context, identity)
        if reason is Reason.SIGNATURE_MISMATCH:
            log.warning("cookie signature rejected", extra={"event": "bad_signature", "peer": context.peer()})
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("cookie rejected", extra={"event": "rejected", "reason": reason.label})
        return self._response(reason, credential)

    def _judge(
        self, credential: Credential, stored: StoredSession
    ) -> tuple[pb.ValidateSessionResponse, UserRecord | None]:
        """Answer a verified credential from what the store holds for it.

        Also returns the Passport user whose record must still be read from
        the store (a scalar id with user records configured), else ``None``.
        """
        session_id = credential.session_id or ""
        if stored.wrong_type:
            self._log_unusable(Reason.CORRUPT_SESSION, session_id)
            return self._response(Reason.CORRUPT_SESSION, credential), None
        judgement = judge_stored(stored.raw, stored.pttl_ms, self._clock())
        response = self._response(judgement.reason, credential)
        if judgement.expire_time is not None:
            response.expire_time.FromDatetime(judgement.expire_time)
        if judgement.reason is not Reason.SESSION_ACTIVE:
            self._log_unusable(judgement.reason, session_id)
            return response, None
        user = judgement.user
        if user is None:
            return response, None
        response.authenticated = True
        if user.record is None and self._store.has_user_records:
            return response, user
        response.user.CopyFrom(build_profile(user, user.record))
        return response, None

    def _log_unusable(self, reason: Reason, session_id: str) -> None:
        extra = {"event": reason.label, "sid_tag": self._hasher(session_id)}
        if reason is Reason.CORRUPT_SESSION:
            log.error("stored session is unreadable; express-session would fail this request", extra=extra)
        else:
            log.info("session not usable", extra=extra)
