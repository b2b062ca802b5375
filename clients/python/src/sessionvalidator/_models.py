"""The verdict on one credential, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2

from sessionvalidator._errors import SessionValidatorError
from sessionvalidator.v1 import session_validator_service_pb2 as pb

__all__ = ["User", "Validation", "from_response"]

VERDICT_VALID = "VERDICT_VALID"

# Integers a double holds exactly (JavaScript's Number.MAX_SAFE_INTEGER).
_MAX_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True, slots=True)
class User:
    """The Passport user of a session (``UserProfile`` in the contract)."""

    #: ``passport.user`` when it is a scalar (numbers as JavaScript writes them), else the record's ``id``.
    id: str
    username: str = ""
    display_name: str = ""
    email: str = ""
    roles: tuple[str, ...] = ()
    #: The whole stored user record, as JSON would load it; empty when there is none.
    attributes: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Validation:
    """The validator's verdict on one credential.

    ``verdict`` and ``reason`` are the contract's enum value names, such as
    ``"VERDICT_VALID"`` and ``"REASON_SESSION_ACTIVE"``. The enums are open: a
    value this client version does not know is given as its number in decimal
    (``"7"``), as proto3 JSON writes it, and is never valid.
    """

    verdict: str
    reason: str
    #: The unsigned session id, once a configured secret verified the signature; else "".
    session_id: str = ""
    #: True when the session holds a logged-in Passport user (only with a valid verdict).
    authenticated: bool = False
    #: The logged-in user; ``None`` unless ``authenticated``.
    user: User | None = None
    #: When the session expires (timezone-aware UTC), or ``None`` when it has no known expiry.
    expire_time: datetime | None = None
    #: Position of the verifying secret in the validator's list (0 is current); ``None`` if none verified.
    secret_index: int | None = None
    #: The name of the cookie that was judged.
    cookie_name: str = ""
    #: The session token asked for with ``issue_token=True`` (a JWT; verify it with
    #: :class:`sessionvalidator.tokens.TokenVerifier`), or "". Valid until its ``exp``, even after a logout.
    token: str = ""

    @property
    def valid(self) -> bool:
        """True only for ``VERDICT_VALID``; every other verdict, known or not, is not valid."""
        return self.verdict == VERDICT_VALID


def _enum_name(enum: Any, number: int) -> str:
    try:
        return str(enum.Name(number))
    except ValueError:
        return str(number)


def _plain(value: Any) -> Any:
    """Struct numbers are doubles; give integral ones back as ``int``, as ``json.loads`` would."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _attributes(struct: struct_pb2.Struct) -> dict[str, Any]:
    if not struct.fields:
        return {}
    loaded: dict[str, Any] = _plain(json_format.MessageToDict(struct))
    return loaded


def _user(profile: pb.UserProfile) -> User:
    return User(
        id=profile.id,
        username=profile.username,
        display_name=profile.display_name,
        email=profile.email,
        roles=tuple(profile.roles),
        attributes=_attributes(profile.attributes),
    )


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One credential's answer in a batch (``validate_batch``).

    ``error`` is set when the service refused that credential on its own (a
    bad cookie over the caller's rate limit: a :class:`RateLimitedError` with
    ``retry_delay``); ``validation`` is then not valid.
    """

    validation: Validation
    error: SessionValidatorError | None = None


def from_response(response: pb.ValidateSessionResponse) -> Validation:
    """Build a :class:`Validation` from the wire message."""
    return Validation(
        verdict=_enum_name(pb.Verdict, response.verdict),
        reason=_enum_name(pb.Reason, response.reason),
        session_id=response.session_id,
        authenticated=response.authenticated,
        user=_user(response.user) if response.authenticated and response.HasField("user") else None,
        expire_time=response.expire_time.ToDatetime(tzinfo=UTC) if response.HasField("expire_time") else None,
        secret_index=response.secret_index if response.HasField("secret_index") else None,
        cookie_name=response.cookie_name,
        token=response.token,
    )
