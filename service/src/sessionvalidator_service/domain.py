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
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from sessionvalidator_service.cookies import find_cookie, value_from_text
from sessionvalidator_service.signature import Signer

__all__ = [
    "MAX_CREDENTIAL_LENGTH",
    "Credential",
    "Reason",
    "StoredJudgement",
    "UserRecord",
    "Verdict",
    "js_string",
    "judge_stored",
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
_END = object()
# The range a google.protobuf.Timestamp can hold; JavaScript dates reach further.
_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_CORRUPT = StoredJudgement(Reason.CORRUPT_SESSION)


def _scrub(value: Any) -> Any:
    """Replace lone surrogates the way JavaScript's UTF-8 encoder does."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


def _reject_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def parse_json(raw: bytes) -> Any:
    """Parse stored JSON as node-redis + ``JSON.parse`` would.

    orjson handles the common case; the rare inputs it refuses but
    JavaScript accepts (integers beyond 64 bits, lone surrogate escapes,
    invalid UTF-8 that node-redis decodes with U+FFFD) go through the
    standard library. Raises :class:`ValueError` when JavaScript would throw.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    text = raw.decode("utf-8", "replace")
    try:
        return _scrub(json.loads(text, parse_constant=_reject_constant, parse_int=_js_int))
    except RecursionError:
        # Past ~1000 levels (orjson stops at 1024): refused, never a crash.
        msg = "JSON nested too deeply"
        raise ValueError(msg) from None


def _js_int(text: str) -> int | float:
    """Read an integer literal as JSON.parse does: a double once it has many digits."""
    return int(text) if len(text) <= 20 else float(text)  # noqa: PLR2004 - beyond 2**64 only the double matters


def _js_truthy_user(user: Any) -> bool:
    """Passport's test: ``if (su || su === 0)``."""
    if user is None or user is False:
        return False
    if isinstance(user, str):
        return user != ""
    return not (isinstance(user, float) and math.isnan(user))


def _js_number(value: float) -> str:
    """ECMAScript Number::toString(10) for a finite double."""
    if value == 0:
        return "0"
    # repr gives the shortest digits that round-trip, as ECMAScript requires;
    # normalize() strips trailing zeros: value = 0.<digits> x 10**n.
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = k + int(exponent)
    if k <= n <= 21:  # noqa: PLR2004 - ECMAScript's limits
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:  # noqa: PLR2004
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:  # noqa: PLR2004
        text = "0." + "0" * -n + digits
    else:
        head = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{head}e{'+' if n > 0 else '-'}{abs(n - 1)}"
    return "-" + text if sign else text


def js_string(value: Any) -> str:
    """Render a JSON scalar as JavaScript's ``String()`` would after ``JSON.parse``."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        # JSON.parse makes every number a double: beyond 2**53 digits are lost,
        # beyond the largest double it is Infinity.
        if abs(value) <= 2**53:
            return str(value)
        try:
            return _js_number(float(value))
        except OverflowError:
            return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return _js_number(value)
    if isinstance(value, list):
        return _js_join(value)
    return "[object Object]"


def _js_join(array: list[Any]) -> str:
    """``String(array)``: a comma join that flattens nested arrays, without recursion.

    Array.prototype.join renders null as "" and a nested array as its own
    join, so the result is the leaves in order, each empty array one "".
    """
    leaves: list[str] = []
    stack: list[Iterator[Any]] = [iter(array)]
    emitted = [False]  # whether each open array has produced a leaf yet
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            if not emitted.pop():
                leaves.append("")  # an empty array is one empty element
            continue
        emitted[-1] = True
        if isinstance(item, list):
            stack.append(iter(item))
            emitted.append(False)
        else:
            leaves.append("" if item is None else js_string(item))
    return ",".join(leaves)


def _parse_expires(value: Any) -> datetime | None:
    """Read a stored ``cookie.expires`` (``Date.toJSON`` output) or ``None``."""
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


def _add(now: datetime, milliseconds: int) -> datetime:
    """``now`` plus a key TTL, held to what a Timestamp can carry (a TTL can be millennia)."""
    try:
        return min(now + timedelta(milliseconds=milliseconds), _LATEST)
    except OverflowError:
        return _LATEST


def judge_stored(raw: bytes | None, pttl_ms: int, now: datetime) -> StoredJudgement:
    """Judge what the store holds for a verified session id.

    ``raw`` is the stored value (``None`` when the key is absent) and
    ``pttl_ms`` the key's PTTL (-1: no TTL, -2: no key).
    """
    if not raw or pttl_ms == -2:  # noqa: PLR2004 - Redis: key does not exist
        # connect-redis: `if (!data) return cb()`; a key that expired
        # between GET and PTTL is gone too.
        return _NOT_FOUND
    try:
        session = parse_json(raw)
    except ValueError:
        return _CORRUPT
    if (
        session is None
        or session is False
        or session == ""
        or (isinstance(session, int | float) and not isinstance(session, bool) and session == 0)
    ):
        # express-session: `else if (!sess) generate()`, a falsy session is none.
        return _NOT_FOUND
    if not isinstance(session, dict):
        return _CORRUPT
    cookie = session.get("cookie")
    if not isinstance(cookie, dict):
        # Store.createSession reads sess.cookie.expires and throws.
        return _CORRUPT
    stored_expires = _parse_expires(cookie.get("expires"))
    if pttl_ms >= 0:
        # The key's TTL is the truth: touch/rolling extend it without
        # rewriting the stored cookie.expires.
        expire_time: datetime | None = _add(now, pttl_ms)
    else:
        expire_time = stored_expires
        if stored_expires is not None and stored_expires <= now:
            return StoredJudgement(Reason.SESSION_EXPIRED, expire_time=stored_expires)
    passport = session.get("passport")
    user: UserRecord | None = None
    if isinstance(passport, dict):
        su = passport.get("user")
        if _js_truthy_user(su):
            if isinstance(su, dict):
                user_id = su.get("id", su.get("_id"))
                user = UserRecord("" if user_id is None else js_string(user_id), su)
            else:
                user = UserRecord(js_string(su), None)
    return StoredJudgement(Reason.SESSION_ACTIVE, expire_time=expire_time, user=user)
