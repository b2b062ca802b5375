"""Reference models and invariants shared by the property tests and the atheris targets.

The reference models are written from the specification
(expressjs/cookie index.js ``parse`` and ``tryDecode`` at v0.7.2, its
test/parse.js; tj/node-cookie-signature index.js ``sign``/``unsign`` at 1.0.7,
its test/index.js; expressjs/session index.js ``getcookie``; ECMA-262 ``Decode``),
not from the service code, so that a property comparing the two is a real
differential test:

* :func:`ref_decode_uri_component`: JavaScript's ``decodeURIComponent``, built
  on ``bytes``: every escape becomes its octet, every other character its
  UTF-8 encoding, and the whole octet string must be valid UTF-8. A raw
  character's UTF-8 encoding never starts with a continuation byte, so a
  truncated escape sequence followed by a raw character fails here exactly
  as it does in JavaScript.
* :func:`ref_find_cookie`: ``cookie`` 0.7.2 ``parse`` as the spec states it,
  with ``str.split`` instead of the index walk.
* :func:`ref_unsign`: ``cookie-signature`` 1.0.7 ``unsign`` (exact equality of
  ``sign(value)`` and the input), with ``hmac`` directly.
* :func:`ref_read_credential`: express-session's ``getcookie`` decision plus the
  service's 16 KiB limit.

:data:`FOUND_BUGS` lists the service bugs the fuzzers found (regression tests
in tests/fuzz/test_fuzz_findings.py). :data:`OPEN_BUGS` are those not fixed
yet; :func:`known_bug` tells whether an exception is one of them, so that a
long fuzz run can tolerate it and keep looking for new ones. Today every
found bug is fixed, so nothing is tolerated: a regression is a crash.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator_service.domain import MAX_CREDENTIAL_LENGTH, Credential, Reason, UserRecord
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.profile import AttributePolicy, build_profile
from sessionvalidator_service.servicer import (
    REASONS,
    VERDICTS,
    SessionValidatorServicer,
    serialize_response,
    user_profile,
)
from sessionvalidator_service.stores import StoredSession
from sessionvalidator_service.stores.memory import MemoryStore
from sessionvalidator_service.validator import Outcome, Validator

COOKIE_NAME = "connect.sid"

# Every secret the shared vectors sign with, so that seeds taken from
# tests/vectors/*.json verify and the fuzzers start on the VALID paths.
FUZZ_SECRETS: tuple[str, ...] = (
    "keyboard cat",
    "nyan cat",
    "vectors: current signing secret, comfortably over 32 bytes",
    "vectors: previous secret, still accepted during rotation",
)

# Reasons a cookie alone can decide, and which of them carry a session id.
COOKIE_REASONS = frozenset(
    {
        Reason.NO_COOKIE,
        Reason.COOKIE_NOT_FOUND,
        Reason.EMPTY_VALUE,
        Reason.NOT_SIGNED,
        Reason.TOO_LARGE,
        Reason.SIGNATURE_MISMATCH,
        Reason.EMPTY_SESSION_ID,
    }
)
STORE_REASONS = frozenset(
    {Reason.SESSION_ACTIVE, Reason.SESSION_NOT_FOUND, Reason.SESSION_EXPIRED, Reason.CORRUPT_SESSION}
)

# Nesting the Python client can still parse: upb refuses messages nested
# deeper than 100 levels, and each Struct level costs three (see SV-FUZZ-6).
CLIENT_SAFE_DEPTH = 30

FIXED_IN = "a5a935f"
# Every bug the fuzzers found: id -> what went wrong (all fixed in FIXED_IN).
FOUND_BUGS: dict[str, str] = {
    "SV-FUZZ-1": "parse_json: JSON nested deeper than 1024 levels (orjson's limit) falls back to json.loads, "
    "which raises RecursionError, not ValueError; judge_stored and RedisSessionStore._user let it escape",
    "SV-FUZZ-2": "js_string recurses once per nested array level: a Passport user id nested ~500+ arrays deep "
    "raises RecursionError inside judge_stored",
    "SV-FUZZ-3": "build_profile: Struct.update recurses per level (~500 levels raise RecursionError, which the "
    "except clause does not catch); a roles/role string of 1000+ '[' makes _strings' json.loads raise it too",
    "SV-FUZZ-4": "servicer._judge: expire_time.FromDatetime raises OverflowError for a stored cookie.expires "
    "at the edge of datetime's range with a UTC offset (no key TTL), e.g. 9999-12-31T23:59:59-01:00",
    "SV-FUZZ-5": "judge_stored: now + timedelta(milliseconds=pttl) raises OverflowError for a key PTTL above "
    "~2.5e14 ms (Redis accepts PX up to ~9.2e18)",
    "SV-FUZZ-6": "a user record nested 33+ objects deep makes a response the Python client cannot parse "
    "(upb max depth 100): the client sees INTERNAL 'Exception deserializing response'",
    "SV-FUZZ-7": "a request whose string field (cookie_header_text, signed_value) is not UTF-8 is refused by the "
    "gRPC deserializer with UNKNOWN and a message naming protobuf's DecodeError, not a verdict",
    "SV-FUZZ-8": "js_string: a Passport user id that is an integer beyond ~1.8e308 (309 to 4300 digits) raises "
    "OverflowError in float(value) inside judge_stored; JavaScript's String(Infinity) is 'Infinity'",
    "SV-FUZZ-9": "parity, not a crash: a stored session holding an integer of more than 4300 digits is "
    "CORRUPT_SESSION (Python's int-digits limit makes json.loads raise); JSON.parse reads it as a number",
    "SV-FUZZ-10": "build_profile: a roles/role string that is a JSON array with a lone surrogate escape "
    '(the text ["\\ud800"]) goes through _strings\' json.loads, which keeps the surrogate; '
    "profile.roles.extend then raises UnicodeEncodeError (protobuf strings must be UTF-8)",
}

# The found bugs not fixed yet, which the atheris targets tolerate (run.py --strict stops on them anyway).
# To tolerate a new bug while its fix is pending: add it to FOUND_BUGS, give it a rule in known_bug(), list it here.
OPEN_BUGS: frozenset[str] = frozenset()

# ---------------------------------------------------------------- decodeURIComponent

_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_MALFORMED_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def has_malformed_escape(text: str) -> bool:
    """Whether ``text`` holds a ``%`` not followed by two hex digits."""
    return _MALFORMED_ESCAPE.search(text) is not None


def ref_decode_uri_component(text: str) -> str:
    """JavaScript's ``decodeURIComponent``; raises :class:`ValueError` where it throws ``URIError``."""
    octets = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "%":
            if _HEX2.fullmatch(text, index + 1, index + 3) is None:
                msg = f"malformed escape at {index}"
                raise ValueError(msg)
            octets.append(int(text[index + 1 : index + 3], 16))
            index += 3
        else:
            octets += char.encode("utf-8")
            index += 1
    return octets.decode("utf-8")  # UnicodeDecodeError is a ValueError


# ---------------------------------------------------------------- cookie.parse + getcookie


def _trim(text: str) -> str:
    return text.strip(" \t")


def ref_value(raw: str) -> str:
    """Trim, unquote and ``tryDecode`` one cookie value (cookie 0.7.2)."""
    value = _trim(raw)
    if value.startswith('"') and value.endswith('"'):
        value = value[1:-1]  # a lone '"' gives ''
    if "%" in value:
        try:
            return ref_decode_uri_component(value)
        except ValueError:
            return value
    return value


def ref_find_cookie(header: str, name: str) -> str | None:
    """``cookie.parse(header)[name]``: first occurrence wins, segments without '=' are skipped."""
    if len(header) < 2:
        return None
    for segment in header.split(";"):
        key, eq, value = segment.partition("=")
        if eq and _trim(key) == name:
            return ref_value(value)
    return None


def ref_unsign(signed: str, secrets: Sequence[str]) -> tuple[str, int] | None:
    """``cookie-signature`` 1.0.7 under each secret in turn: ``(value, index)`` or ``None``."""
    dot = signed.rfind(".")
    if dot == -1:
        return None
    value = signed[:dot]
    for index, secret in enumerate(secrets):
        digest = hmac.new(secret.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).digest()
        if value + "." + base64.b64encode(digest).decode("ascii").rstrip("=") == signed:
            return value, index
    return None


def ref_read_credential(
    secrets: Sequence[str], name: str, *, header: str | None = None, value: str | None = None
) -> Credential:
    """What express-session's ``getcookie`` decides, as a :class:`Credential`."""
    if header is not None:
        if len(header) > MAX_CREDENTIAL_LENGTH:
            return Credential(Reason.TOO_LARGE)
        if header == "":
            return Credential(Reason.NO_COOKIE)
        raw = ref_find_cookie(header, name)
        if raw is None:
            return Credential(Reason.COOKIE_NOT_FOUND)
    elif value is None:
        return Credential(Reason.NO_COOKIE)
    elif len(value) > MAX_CREDENTIAL_LENGTH:
        return Credential(Reason.TOO_LARGE)
    else:
        raw = ref_value(value)
    if raw == "":
        return Credential(Reason.EMPTY_VALUE)
    if raw[:2] != "s:":
        return Credential(Reason.NOT_SIGNED)
    unsigned = ref_unsign(raw[2:], secrets)
    if unsigned is None:
        return Credential(Reason.SIGNATURE_MISMATCH)
    sid, index = unsigned
    return Credential(Reason.EMPTY_SESSION_ID if sid == "" else None, sid, index)


def first_index(secrets: Sequence[str], index: int) -> int:
    """The index that verifies a cookie signed with ``secrets[index]`` (duplicates: the first)."""
    return secrets.index(secrets[index])


# ---------------------------------------------------------------- invariants


def check_credential(credential: Credential, secret_count: int) -> None:
    """A credential's reason, session id and secret index agree with each other."""
    assert isinstance(credential, Credential)
    if credential.reason is None:
        assert isinstance(credential.session_id, str)
        assert credential.session_id
        assert isinstance(credential.secret_index, int)
        assert 0 <= credential.secret_index < secret_count
    elif credential.reason is Reason.EMPTY_SESSION_ID:
        assert credential.session_id == ""
        assert isinstance(credential.secret_index, int)
        assert 0 <= credential.secret_index < secret_count
    else:
        assert credential.reason in COOKIE_REASONS
        assert credential.session_id is None
        assert credential.secret_index is None


def check_response(response: pb.ValidateSessionResponse, cookie_name: str = COOKIE_NAME) -> None:
    """A verdict is set, the reason belongs to it, and the message survives the wire."""
    assert response.verdict != pb.VERDICT_UNSPECIFIED
    assert response.reason != pb.REASON_UNSPECIFIED
    reason = next(r for r, value in REASONS.items() if value == response.reason)
    assert VERDICTS[reason.verdict] == response.verdict
    assert response.cookie_name == cookie_name
    wire = response.SerializeToString()
    assert pb.ValidateSessionResponse.FromString(wire) == response


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion: the values may be very deep."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
            deepest = max(deepest, depth + 1)
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
            deepest = max(deepest, depth + 1)
    return deepest


def bracket_depth(data: bytes | str) -> int:
    """Deepest run of unclosed ``[``/``{`` anywhere in ``data``, strings included (an upper bound)."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    return deepest


_HUGE_INT = re.compile(rb"[0-9]{309,}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _as_bytes(chunk: bytes | str) -> bytes:
    return chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "surrogatepass")


def _datetime_out_of_range(moment: datetime | None) -> bool:
    if moment is None:
        return False
    try:
        moment.astimezone(UTC)
        moment.utctimetuple()
    except OverflowError:
        return True
    return False


def known_bug(
    exc: BaseException,
    *,
    data: bytes | str | Iterable[bytes | str] = b"",
    pttl_ms: int = 0,
    expires: datetime | None = None,
    depth: int | None = None,
) -> tuple[str, ...]:
    """The :data:`OPEN_BUGS` that explain ``exc`` for this input; empty when it is new (or a regression).

    ``data`` is the fuzz input (for the nesting depth and digit runs it
    holds), ``depth`` the parsed JSON's depth when known, ``pttl_ms`` and
    ``expires`` the key's PTTL and the judged expiry.
    """
    chunks = [data] if isinstance(data, bytes | str) else list(data)
    deepest = max((bracket_depth(chunk) for chunk in chunks), default=0)
    candidates: tuple[str, ...] = ()
    if isinstance(exc, RecursionError) and deepest >= 250:  # far below any recursion limit
        candidates = ("SV-FUZZ-1", "SV-FUZZ-2", "SV-FUZZ-3")
    elif isinstance(exc, OverflowError):
        if any(_HUGE_INT.search(_as_bytes(chunk)) for chunk in chunks):
            candidates = ("SV-FUZZ-8",)
        elif pttl_ms > 2 * 10**14:
            candidates = ("SV-FUZZ-5",)
        elif _datetime_out_of_range(expires):
            candidates = ("SV-FUZZ-4",)
    elif isinstance(exc, DecodeError) and (deepest if depth is None else depth) > CLIENT_SAFE_DEPTH:
        candidates = ("SV-FUZZ-6",)
    elif isinstance(exc, UnicodeEncodeError) and any(_SURROGATE_ESCAPE.search(_as_bytes(c)) for c in chunks):
        candidates = ("SV-FUZZ-10",)
    return tuple(bug for bug in candidates if bug in OPEN_BUGS)


@contextlib.contextmanager
def production_recursion_limit(limit: int = 1000) -> Iterator[None]:
    """Run the block under Python's default recursion limit, as the service runs.

    Hypothesis raises the limit (to about 2000) while a test runs, which hides
    recursion bugs: JSON nested 1025 levels deep parses in a property test and
    fails in production.
    """
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


# ---------------------------------------------------------------- the servicer without a network


FIXED_NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


class Judge:
    """The real validator and servicer (built once), judging what a store holds without a network.

    With no user records configured the profile comes from the stored
    Passport user itself. The clock is :data:`FIXED_NOW` and the metrics go
    to a registry of their own.
    """

    def __init__(self) -> None:
        metrics = Metrics(CollectorRegistry())
        self.validator = Validator(
            secrets=FUZZ_SECRETS,
            store=MemoryStore(),
            cookie_name=COOKIE_NAME,
            metrics=metrics,
            clock=lambda: FIXED_NOW,
        )
        self.servicer = SessionValidatorServicer(self.validator, metrics=metrics)

    def _judge(
        self, credential: Credential, stored: StoredSession
    ) -> tuple[pb.ValidateSessionResponse, UserRecord | None]:
        """The response for ``credential`` given ``stored``, and the user whose record is still to be read."""
        outcome = self.validator._judge(credential, stored)
        if self.validator._needs_record(outcome):
            return self.respond(outcome), outcome.user
        self.validator._profile(outcome)
        return self.respond(outcome), None

    def respond(self, outcome: Outcome) -> pb.ValidateSessionResponse:
        """The response message, after checking that ValidateSession's pre-encoded bytes are its exact encoding."""
        response = self.servicer._response(outcome)
        encoded = self.servicer._encoded(outcome)
        assert serialize_response(encoded) == response.SerializeToString(), (encoded, response)
        return response


@functools.cache
def make_servicer() -> Judge:
    """The shared :class:`Judge`."""
    return Judge()


def profile_message(user: UserRecord, record: Mapping[str, Any] | None) -> pb.UserProfile:
    """The UserProfile the service sends for ``user`` and its record, under the default attribute policy."""
    return user_profile(build_profile(user, record, AttributePolicy()))
