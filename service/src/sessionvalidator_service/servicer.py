"""The gRPC adapter: protobuf in, the validator's outcome out.

Everything that decides lives in :mod:`.validator` and the modules it uses;
this module only converts requests into credential inputs and outcomes into
responses, and failures into statuses (:mod:`.errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, NoReturn

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.cookies import header_from_bytes
from sessionvalidator_service.domain import Reason, Verdict
from sessionvalidator_service.errors import (
    Failure,
    FailureReporter,
    abort,
    batch_too_large,
    item_error,
    malformed_request,
    rate_limited,
)
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.profile import Profile
from sessionvalidator_service.ratelimit import Identity, identity_of
from sessionvalidator_service.tokens import NO_KEYS, TokenIssuer
from sessionvalidator_service.validator import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    NO_CREDENTIAL,
    CredentialInput,
    Outcome,
    Validator,
)

__all__ = [
    "MAX_PROFILE_BYTES",
    "REASONS",
    "VERDICTS",
    "SessionValidatorServicer",
    "credential_input",
    "serialize_response",
    "timestamp",
    "user_profile",
]

VERDICTS: Mapping[Verdict, pb.Verdict.ValueType] = {
    verdict: pb.Verdict.Value("VERDICT_" + verdict.name) for verdict in Verdict
}
REASONS: Mapping[Reason, pb.Reason.ValueType] = {reason: pb.Reason.Value("REASON_" + reason.name) for reason in Reason}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A profile larger than this on the wire is sent without its attributes: a
# response stays small whatever the store holds, so what a client that does not
# read can make the server hold is bounded by the streams a connection may open.
MAX_PROFILE_BYTES = 64 * 1024
_CACHED_PROFILES = 4096
# Encoded responses kept (their parts around expire_time) for this many sessions, then afresh.
_CACHED_ENCODINGS = 8192
_EXPIRE_TIME_TAG = b"\x32"  # ValidateSessionResponse.expire_time: field 6, length-delimited
_TOKEN_TAG = b"\x52"  # ValidateSessionResponse.token: field 10, length-delimited (the last field: appended)


def serialize_response(response: pb.ValidateSessionResponse | bytes) -> bytes:
    """Serialize a ValidateSession response; one the servicer already encoded is sent as it is."""
    return response if response.__class__ is bytes else response.SerializeToString()  # type: ignore[union-attr]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:  # noqa: PLR2004 - seven bits a byte
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _expire_time_field(moment: datetime) -> bytes:
    """ValidateSessionResponse.expire_time as protobuf encodes it (seconds and nanos omitted when 0)."""
    delta = moment - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    nanos = delta.microseconds * 1000
    body = b""
    if seconds > 0:
        body = b"\x08" + _varint(seconds)
    elif seconds < 0:
        body = b"\x08" + _varint(seconds & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement, ten bytes
    if nanos:
        body += b"\x10" + _varint(nanos)
    return _EXPIRE_TIME_TAG + _varint(len(body)) + body


def credential_input(request: pb.ValidateSessionRequest) -> CredentialInput:
    """Return the credential a request carries (none at all is a request without a Cookie header)."""
    kind = request.WhichOneof("credential")
    if kind == "cookie_header":
        return ("header", header_from_bytes(request.cookie_header))
    if kind == "cookie_header_text":
        return ("header", request.cookie_header_text)
    if kind == "signed_value":
        return ("value", request.signed_value)
    return NO_CREDENTIAL


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """Build a Timestamp from integers (no float rounding, no FromDatetime overhead)."""
    delta = moment - _EPOCH
    return timestamp_pb2.Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def _struct_safe(value: Any) -> Any:
    """Make JSON that a Struct cannot hold (huge integers) representable."""
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


def user_profile(profile: Profile) -> pb.UserProfile:
    """Return the protobuf form of a profile."""
    message = pb.UserProfile(
        id=profile.id,
        username=profile.username,
        display_name=profile.display_name,
        email=profile.email,
        roles=profile.roles,
    )
    if profile.attributes:
        try:
            message.attributes.update(profile.attributes)
        except (ValueError, TypeError, OverflowError):
            message.attributes.Clear()
            message.attributes.update(_struct_safe(dict(profile.attributes)))
        if message.ByteSize() > MAX_PROFILE_BYTES:
            message.ClearField("attributes")
    return message


class SessionValidatorServicer(pb_grpc.SessionValidatorServicer):
    """Answers ``ValidateSession`` and ``ValidateSessions`` from a :class:`Validator`."""

    def __init__(
        self,
        validator: Validator,
        *,
        metrics: Metrics,
        peer_header: str | None = None,
        retry_pushback: bool = True,
        identify: bool = True,
        tokens: TokenIssuer | None = None,
    ) -> None:
        self._validator = validator
        self._tokens = tokens
        self._metrics = metrics
        self._reporter = FailureReporter(metrics)
        self._peer_header = peer_header
        self._retry_pushback = retry_pushback
        # Without a rate limit nobody needs to know who is calling.
        self._identify = identify
        cookie_name = validator.cookie_name
        self._profiles: dict[int, tuple[Profile, pb.UserProfile]] = {}
        # (session id, secret index, reason, authenticated, id(profile)) -> the encoding before
        # and after expire_time, and the profile (kept alive so its id is not reused meanwhile).
        self._encodings: dict[tuple[str, int | None, Reason, bool, int], tuple[bytes, bytes, Profile | None]] = {}
        # Verdicts decided by the cookie alone carry no per-call data; they
        # are built once and serialized from the same message every time.
        self._fixed = {
            reason: pb.ValidateSessionResponse(
                verdict=VERDICTS[reason.verdict], reason=REASONS[reason], cookie_name=cookie_name
            )
            for reason in Reason
        }

    def _identity(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity | None:
        if not self._identify:
            return None
        forwarded = None
        if self._peer_header is not None:
            for key, value in context.invocation_metadata() or ():
                if key == self._peer_header and isinstance(value, str):
                    forwarded = value
                    break
        return identity_of(context.peer(), forwarded)

    def _response(self, outcome: Outcome) -> pb.ValidateSessionResponse:
        reason = outcome.reason
        if reason is None:  # refused on its own, inside a batch
            failure = rate_limited(outcome.retry_after_s or 0.0, outcome.scope)
            return pb.ValidateSessionResponse(error=item_error(failure), cookie_name=self._validator.cookie_name)
        credential = outcome.credential
        if credential.session_id is None:
            return self._fixed[reason]
        response = pb.ValidateSessionResponse(
            verdict=VERDICTS[reason.verdict],
            reason=REASONS[reason],
            session_id=credential.session_id,
            secret_index=credential.secret_index,
            cookie_name=self._validator.cookie_name,
            authenticated=outcome.user is not None,
        )
        if outcome.expire_time is not None:
            response.expire_time.CopyFrom(timestamp(outcome.expire_time))
        profile = outcome.profile
        if profile is not None:
            response.user.CopyFrom(self._user_message(profile))
        return response

    def _encoded(self, outcome: Outcome) -> pb.ValidateSessionResponse | bytes:
        """Return the response for ``outcome``, encoded when it names a session: what ``_response`` serializes to.

        Everything but ``expire_time`` is the same for every call on one
        stored session, so it is encoded once, and the expiry (field 6) is
        spliced in between, in field order as protobuf itself writes it.
        """
        reason = outcome.reason
        credential = outcome.credential
        session_id = credential.session_id
        if reason is None or session_id is None:
            return self._response(outcome)
        profile = outcome.profile
        authenticated = outcome.user is not None
        key = (session_id, credential.secret_index, reason, authenticated, id(profile))
        parts = self._encodings.get(key)
        if parts is None or parts[2] is not profile:
            # _response's own message, cut around field 6: fields 1-5 before it, 7-8 after.
            head = self._response(outcome)
            head.ClearField("expire_time")
            tail = pb.ValidateSessionResponse(cookie_name=head.cookie_name)
            if head.HasField("secret_index"):
                tail.secret_index = head.secret_index
            head.ClearField("secret_index")
            head.ClearField("cookie_name")
            parts = (head.SerializeToString(), tail.SerializeToString(), profile)
            if len(self._encodings) >= _CACHED_ENCODINGS:
                self._encodings.clear()
            self._encodings[key] = parts
        if outcome.expire_time is None:
            return parts[0] + parts[1]
        return parts[0] + _expire_time_field(outcome.expire_time) + parts[1]

    def _token(self, outcome: Outcome) -> str | None:
        """Return the session token for a VALID session of a Passport user, when tokens are configured."""
        tokens = self._tokens
        reason = outcome.reason
        session_id = outcome.credential.session_id
        profile = outcome.profile
        if tokens is None or reason is None or reason.verdict is not Verdict.VALID or profile is None or not session_id:
            return None
        return tokens.token(session_id, profile, outcome.expire_time, self._validator.hasher)

    def _user_message(self, profile: Profile) -> pb.UserProfile:
        """Return the UserProfile of ``profile``, built once per profile the validator keeps (see Validator._parsed)."""
        cached = self._profiles.get(id(profile))
        if cached is not None and cached[0] is profile:
            return cached[1]
        message = user_profile(profile)
        if len(self._profiles) >= _CACHED_PROFILES:
            self._profiles.clear()
        # The profile is kept alive beside its message, so its id cannot be reused meanwhile.
        self._profiles[id(profile)] = (profile, message)
        return message

    async def _fail(self, context: grpc.aio.ServicerContext[Any, Any], failure: Failure) -> NoReturn:
        await abort(context, failure, retry_pushback=self._retry_pushback)

    async def ValidateSession(  # type: ignore[override]  # noqa: N802 - gRPC method name; may answer encoded bytes
        self,
        request: pb.ValidateSessionRequest | None,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.ValidateSessionResponse | bytes:
        """Judge one credential; a store failure ends the call with UNAVAILABLE.

        The answer may come already encoded (see ``_encoded``); the method is
        registered with :func:`serialize_response`.
        """
        if request is None:  # not a protobuf message at all (see wire.py)
            await self._fail(context, malformed_request())
        started = perf_counter()
        try:  # timed without a context manager: this is the hot path
            try:
                outcome = await self._validator.validate(credential_input(request), self._identity(context))
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status (errors.py)
                await self._fail(context, self._reporter.failure(exc))
            if outcome.reason is None:
                await self._fail(context, rate_limited(outcome.retry_after_s or 0.0, outcome.scope))
            encoded = self._encoded(outcome)
            token = self._token(outcome) if request.issue_token else None
            if not token:
                return encoded
            data = serialize_response(encoded)
            raw = token.encode("ascii")
            return data + _TOKEN_TAG + _varint(len(raw)) + raw
        finally:
            self._metrics.observe_single(perf_counter() - started)

    async def ValidateSessions(  # noqa: N802 - gRPC method name
        self,
        request: pb.ValidateSessionsRequest | None,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.ValidateSessionsResponse:
        """Judge many credentials with one store round trip for all of them."""
        if request is None:  # not a protobuf message at all (see wire.py)
            await self._fail(context, malformed_request())
        with self._metrics.timed("ValidateSessions"):
            items = request.requests
            if len(items) > MAX_BATCH:
                await self._fail(context, batch_too_large(f"{len(items)} credentials", str(MAX_BATCH)))
            inputs = [credential_input(item) for item in items]
            size = sum(len(text) for _, text in inputs)
            if size > MAX_BATCH_BYTES:
                await self._fail(context, batch_too_large(f"{size} bytes of credentials", f"{MAX_BATCH_BYTES} bytes"))
            try:
                outcomes = await self._validator.validate_many(inputs, self._identity(context))
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status (errors.py)
                await self._fail(context, self._reporter.failure(exc))
            responses = [self._response(outcome) for outcome in outcomes]
            for item, outcome, response in zip(items, outcomes, responses, strict=True):
                token = self._token(outcome) if item.issue_token else None
                if token:
                    # _response may hand out a shared message (_fixed) only for outcomes without a session.
                    response.token = token
            return pb.ValidateSessionsResponse(responses=responses)

    async def GetJwks(  # noqa: N802 - gRPC method name
        self,
        request: pb.GetJwksRequest,  # noqa: ARG002 - part of the signature
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 - part of the signature
    ) -> pb.GetJwksResponse:
        """Return the session tokens' public keys (an empty set while tokens are off)."""
        tokens = self._tokens
        if tokens is None:
            return pb.GetJwksResponse(jwks=NO_KEYS.decode("ascii"))
        return pb.GetJwksResponse(
            jwks=tokens.keys.jwks.decode("ascii"), max_age=duration_pb2.Duration(seconds=tokens.config.jwks_max_age_s)
        )
