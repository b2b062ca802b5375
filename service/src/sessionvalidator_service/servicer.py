"""The gRPC adapter: protobuf in, domain rules, protobuf out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

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
    read_credential,
)
from sessionvalidator_service.errors import abort_internal, abort_store
from sessionvalidator_service.logs import SessionIdHasher
from sessionvalidator_service.signature import Signer
from sessionvalidator_service.store import RedisSessionStore, StoreError

__all__ = ["REASONS", "VERDICTS", "SessionValidatorServicer", "build_profile"]

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
                import json

                return _strings(json.loads(value))
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
    try:
        profile.attributes.update(record)
    except (ValueError, TypeError, OverflowError):
        profile.attributes.Clear()
        profile.attributes.update(_struct_safe(dict(record)))
    return profile


class SessionValidatorServicer(pb_grpc.SessionValidatorServicer):
    """Answers ``ValidateSession`` with express-session's own decision."""

    def __init__(
        self,
        *,
        signer: Signer,
        store: RedisSessionStore,
        cookie_name: str,
        hasher: SessionIdHasher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
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

    def _response(self, reason: Reason, credential: Credential) -> pb.ValidateSessionResponse:
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
        request: pb.ValidateSessionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.ValidateSessionResponse:
        """Judge one credential; store failures end the call with UNAVAILABLE."""
        try:
            return await self._validate(request, context)
        except StoreError as exc:
            log.warning(
                "session store failed",
                extra={"event": "store_error", "error_reason": exc.reason, "error": exc.__class__.__name__},
            )
            await abort_store(context, exc)
        except Exception:
            log.exception("validation failed unexpectedly", extra={"event": "internal_error"})
            await abort_internal(context)

    async def _validate(
        self,
        request: pb.ValidateSessionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.ValidateSessionResponse:
        credential = self._read(request)
        if credential.reason is not None:
            if credential.reason is Reason.SIGNATURE_MISMATCH:
                log.warning(
                    "cookie signature rejected",
                    extra={"event": "bad_signature", "peer": context.peer()},
                )
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("cookie rejected", extra={"event": "rejected", "reason": credential.reason.label})
            return self._response(credential.reason, credential)

        session_id = credential.session_id or ""
        stored = await self._store.get_session(session_id)
        if stored.wrong_type:
            judgement_reason = Reason.CORRUPT_SESSION
            judgement = None
        else:
            judgement = judge_stored(stored.raw, stored.pttl_ms, self._clock())
            judgement_reason = judgement.reason

        if judgement is None or judgement_reason is not Reason.SESSION_ACTIVE:
            self._log_unusable(judgement_reason, session_id)
            response = self._response(judgement_reason, credential)
            if judgement is not None and judgement.expire_time is not None:
                response.expire_time.FromDatetime(judgement.expire_time)
            return response

        response = self._response(Reason.SESSION_ACTIVE, credential)
        if judgement.expire_time is not None:
            response.expire_time.FromDatetime(judgement.expire_time)
        user = judgement.user
        if user is not None:
            record = user.record if user.record is not None else await self._store.get_user(user.user_id)
            response.authenticated = True
            response.user.CopyFrom(build_profile(user, record))
        return response

    def _log_unusable(self, reason: Reason, session_id: str) -> None:
        extra = {"event": reason.label, "sid_tag": self._hasher(session_id)}
        if reason is Reason.CORRUPT_SESSION:
            log.error("stored session is unreadable; express-session would fail this request", extra=extra)
        else:
            log.info("session not usable", extra=extra)
