"""The verdict rules, free of gRPC and Redis.

Two pure steps mirror express-session 1.19 with connect-redis and Passport:

1. :func:`read_credential` turns a Cookie header (or a bare value) into either
   a final verdict (MISSING, MALFORMED, BAD_SIGNATURE) or a verified session
   id, exactly as express-session's ``getcookie`` decides.
2. :func:`judge_stored` turns what the store holds for that id into the
   verdict and the Passport user.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sessionvalidator_service.cookies import find_cookie, value_from_text
from sessionvalidator_service.jsemu import js_string, parse_json
from sessionvalidator_service.signature import Signer
from sessionvalidator_service.stores import StoredSession

__all__ = [
    "MAX_CREDENTIAL_LENGTH",
    "Credential",
    "ParsedSession",
    "Reason",
    "StoredJudgement",
    "UserRecord",
    "Verdict",
    "judge_stored",
    "parse_session",
    "read_credential",
]

# Node refuses request headers over 16 KiB (HTTP 431) and browsers cap a
# cookie near 4 KiB: anything longer is refused before any work is done.
MAX_CREDENTIAL_LENGTH = 16 * 1024


class Verdict(enum.Enum):
    """The five outcomes callers act on."""

    VALID = "VALID"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    MALFORMED = "MALFORMED"
    EXPIRED = "EXPIRED"
    MISSING = "MISSING"


class Reason(enum.Enum):
    """The finer cause behind a verdict."""

    SESSION_ACTIVE = (Verdict.VALID, "session_active")
    NO_COOKIE = (Verdict.MISSING, "no_cookie")
    COOKIE_NOT_FOUND = (Verdict.MISSING, "cookie_not_found")
    EMPTY_VALUE = (Verdict.MISSING, "empty_value")
    NOT_SIGNED = (Verdict.MALFORMED, "not_signed")
    EMPTY_SESSION_ID = (Verdict.MALFORMED, "empty_session_id")
    TOO_LARGE = (Verdict.MALFORMED, "too_large")
    SIGNATURE_MISMATCH = (Verdict.BAD_SIGNATURE, "signature_mismatch")
    SESSION_NOT_FOUND = (Verdict.MISSING, "session_not_found")
    SESSION_EXPIRED = (Verdict.EXPIRED, "session_expired")
    CORRUPT_SESSION = (Verdict.MALFORMED, "corrupt_session")
    SESSION_TOO_LARGE = (Verdict.MALFORMED, "session_too_large")
    SESSION_ENCRYPTED = (Verdict.MALFORMED, "session_encrypted")

    @property
    def verdict(self) -> Verdict:
        """The verdict this reason belongs to."""
        return self.value[0]

    @property
    def label(self) -> str:
        """A stable lower-case name for logs and metrics."""
        return self.value[1]


@dataclass(frozen=True, slots=True)
class Credential:
    """What the cookie alone says.

    ``session_id`` is set (possibly empty) once a secret verified the
    signature; ``reason`` is set when the cookie alone decides the verdict.
    """

    reason: Reason | None
    session_id: str | None = None
    secret_index: int | None = None


_NO_COOKIE = Credential(Reason.NO_COOKIE)
_COOKIE_NOT_FOUND = Credential(Reason.COOKIE_NOT_FOUND)
_EMPTY_VALUE = Credential(Reason.EMPTY_VALUE)
_NOT_SIGNED = Credential(Reason.NOT_SIGNED)
_TOO_LARGE = Credential(Reason.TOO_LARGE)
_SIGNATURE_MISMATCH = Credential(Reason.SIGNATURE_MISMATCH)


def read_credential(
    signer: Signer,
    cookie_name: str,
    *,
    header: str | None = None,
    value: str | None = None,
) -> Credential:
    """Judge a Cookie header (as Node's latin-1 string) or a bare value.

    Exactly one of ``header`` and ``value`` is given.
    """
    if header is not None:
        if len(header) > MAX_CREDENTIAL_LENGTH:
            return _TOO_LARGE
        if not header:
            return _NO_COOKIE
        raw = find_cookie(header, cookie_name)
        if raw is None:
            return _COOKIE_NOT_FOUND
    else:
        if value is None or len(value) > MAX_CREDENTIAL_LENGTH:
            return _TOO_LARGE if value is not None else _NO_COOKIE
        raw = value_from_text(value)
    if not raw:  # '' is falsy in express-session: no cookie at all
        return _EMPTY_VALUE
    if not raw.startswith("s:"):  # case-sensitive, after percent-decoding
        return _NOT_SIGNED
    unsigned = signer.unsign(raw[2:])
    if unsigned is None:
        return _SIGNATURE_MISMATCH
    if not unsigned.value:
        # The signature verifies but the id is '': express-session starts
        # a new session.
        return Credential(Reason.EMPTY_SESSION_ID, "", unsigned.secret_index)
    return Credential(None, unsigned.value, unsigned.secret_index)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """The Passport user of a live session.

    ``record`` is the user object when ``passport.user`` is one; for a scalar
    id it is ``None`` and the caller may look the record up by ``user_id``.
    """

    user_id: str
    record: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class StoredJudgement:
    """The verdict on a stored session."""

    reason: Reason
    expire_time: datetime | None = None
    user: UserRecord | None = None


_NOT_FOUND = StoredJudgement(Reason.SESSION_NOT_FOUND)
# The range a google.protobuf.Timestamp can hold; JavaScript dates reach further.
_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_CORRUPT = StoredJudgement(Reason.CORRUPT_SESSION)


def _js_truthy_user(user: Any) -> bool:
    """Passport's test: ``if (su || su === 0)``."""
    if user is None or user is False:
        return False
    if isinstance(user, str):
        return user != ""
    return not (isinstance(user, float) and math.isnan(user))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parse_expires(value: Any) -> datetime | None:
    """Read a stored ``cookie.expires`` or ``None``.

    express-session stores ``Date.toJSON`` output; a store's ``get`` that
    checks expiry (MemoryStore's: ``typeof expires === 'string' ? new
    Date(expires) : expires``, then ``expires <= Date.now()``) compares any
    other number as epoch milliseconds, so a numeric value is one too.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value == 0:
            return None  # falsy or NaN-like: `expires && …` skips it
        return _add(_EPOCH, value)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None  # JavaScript's Invalid Date: no usable expiry
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # a valid JavaScript date beyond year 9999 or before year 1 in UTC
        return _LATEST if parsed.year > 1 else _EARLIEST


def _add(now: datetime, milliseconds: float) -> datetime:
    """``now`` plus a duration, held to what a Timestamp can carry (a TTL can be millennia)."""
    try:
        return max(min(now + timedelta(milliseconds=milliseconds), _LATEST), _EARLIEST)
    except OverflowError:
        return _LATEST if milliseconds > 0 else _EARLIEST


_UNUSABLE = {
    "wrong_type": StoredJudgement(Reason.CORRUPT_SESSION),
    "too_large": StoredJudgement(Reason.SESSION_TOO_LARGE),
    "encrypted": StoredJudgement(Reason.SESSION_ENCRYPTED),
}


def _is_falsy(session: Any) -> bool:
    """JavaScript falsiness of a parsed JSON value (no NaN in JSON)."""
    return (
        session is None
        or session is False
        or session == ""
        or (isinstance(session, int | float) and not isinstance(session, bool) and session == 0)
    )


@dataclass(frozen=True, slots=True)
class ParsedSession:
    """What a stored session says, independent of the time it is read.

    ``reason`` is set when the session is unusable whatever the time
    (SESSION_NOT_FOUND for a falsy one, CORRUPT_SESSION); otherwise the stored
    ``cookie.expires`` and the Passport user are given.
    """

    reason: Reason | None
    cookie_expires: datetime | None = None
    user: UserRecord | None = None


_PARSED_NOT_FOUND = ParsedSession(Reason.SESSION_NOT_FOUND)
_PARSED_CORRUPT = ParsedSession(Reason.CORRUPT_SESSION)


def parse_session(data: bytes | Mapping[str, Any]) -> ParsedSession:
    """Read a stored session (JSON text or a decoded object) as express-session would.

    A pure function of ``data``: callers may cache it by the stored bytes.
    """
    if isinstance(data, bytes):
        try:
            session: Any = parse_json(data)
        except ValueError:
            return _PARSED_CORRUPT
    else:
        session = data
    if _is_falsy(session):
        # express-session: `else if (!sess) generate()`, a falsy session is none.
        return _PARSED_NOT_FOUND
    if not isinstance(session, dict):
        return _PARSED_CORRUPT
    cookie = session.get("cookie")
    if not isinstance(cookie, dict):
        # Store.createSession reads sess.cookie.expires and throws.
        return _PARSED_CORRUPT
    return ParsedSession(None, _parse_expires(cookie.get("expires")), _passport_user(session))


def judge_stored(stored: StoredSession, now: datetime, parsed: ParsedSession | None = None) -> StoredJudgement:
    """Judge what the store holds for a verified session id.

    This is the one place that decides whether a stored session is usable,
    whatever store it came from (see :class:`StoredSession`). ``parsed`` is
    :func:`parse_session` of ``stored.data`` when the caller already has it.
    """
    if stored.expires is not None and stored.expires <= now:
        # connect-mongo keeps `expires` beside the session and finds only
        # documents whose `expires` is still ahead; a past one waits for the
        # TTL index or the interval that removes it. Expired is expired,
        # whatever the session itself holds.
        return StoredJudgement(Reason.SESSION_EXPIRED, expire_time=stored.expires)
    if stored.unusable is not None:
        return _UNUSABLE[stored.unusable]
    data = stored.data
    if not data:
        # connect-redis and connect-mongo: `if (!data) return cb()`.
        return _NOT_FOUND
    if parsed is None:
        parsed = parse_session(data)
    if parsed.reason is not None:
        return _NOT_FOUND if parsed.reason is Reason.SESSION_NOT_FOUND else _CORRUPT
    if stored.ttl_ms is not None:
        # The key's TTL is the truth: touch/rolling extend it without
        # rewriting the stored cookie.expires.
        expire_time: datetime | None = _add(now, stored.ttl_ms)
    elif stored.expires is not None:
        expire_time = stored.expires
    else:
        expire_time = parsed.cookie_expires
        if expire_time is not None and expire_time <= now:
            return StoredJudgement(Reason.SESSION_EXPIRED, expire_time=expire_time)
    return StoredJudgement(Reason.SESSION_ACTIVE, expire_time=expire_time, user=parsed.user)


def _passport_user(session: Mapping[str, Any]) -> UserRecord | None:
    """Return the Passport user of a session: ``passport.user`` when Passport counts it as one."""
    passport = session.get("passport")
    if not isinstance(passport, dict):
        return None
    su = passport.get("user")
    if not _js_truthy_user(su):
        return None
    if isinstance(su, dict):
        user_id = su.get("id", su.get("_id"))
        return UserRecord("" if user_id is None else js_string(user_id), su)
    return UserRecord(js_string(su), None)
