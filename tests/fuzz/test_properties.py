"""Property tests: every input gets a coherent answer, never an exception.

Fast (part of ``make test``). Example counts are small and the default
Hypothesis profile is derandomized (tests/fuzz/conftest.py); a long random
run is ``HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES_SCALE=100 .venv/bin/python -m pytest tests/fuzz -k properties``.

The strategies reach into everything that once broke the service
(tests/fuzz/test_fuzz_findings.py): JSON nested past 1024 levels, expiry
dates at the edge of the calendar, PTTLs of millennia, integers past the
largest double, user records nested past what protobuf clients parse, lone
surrogates in roles text, request text that is not UTF-8.
"""

from __future__ import annotations

import json
import string
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.cookies import decode_uri_component, find_cookie, header_from_bytes, value_from_text
from sessionvalidator_service.domain import (
    MAX_CREDENTIAL_LENGTH,
    Credential,
    Reason,
    UserRecord,
    judge_stored,
    read_credential,
)
from sessionvalidator_service.jsemu import parse_json
from sessionvalidator_service.mint import encode_uri_component, js_iso
from sessionvalidator_service.servicer import REASONS, VERDICTS
from sessionvalidator_service.signature import Signer
from sessionvalidator_service.stores.redis import RedisSessionStore
from tests.fuzz.conftest import SERVICE_COOKIE, SESSION_PREFIX, USER_KEY, FuzzService
from tests.fuzz.oracles import (
    COOKIE_NAME,
    FIXED_NOW,
    FUZZ_SECRETS,
    STORE_REASONS,
    bracket_depth,
    check_credential,
    check_response,
    first_index,
    has_malformed_escape,
    make_servicer,
    production_recursion_limit,
    profile_message,
    ref_decode_uri_component,
    ref_find_cookie,
    ref_read_credential,
    ref_value,
)
from tests.support.hypothesis_profiles import examples
from tests.support.stored import redis_stored

NOW = FIXED_NOW
FUZZ_SIGNER = Signer(list(FUZZ_SECRETS))

# ---------------------------------------------------------------- strategies: text

latin1 = st.characters(codec="latin-1")
latin1_text = st.text(latin1, max_size=120)
no_separators = st.characters(codec="latin-1", exclude_characters=";=")
pad = st.text(st.sampled_from(" \t"), max_size=3)
# Any Unicode scalar value. st.text() draws no surrogates, st.characters() does unless told:
# neither a latin-1 header nor a proto3 string can hold one.
scalar = st.characters(exclude_categories=["Cs"])
unicode_text = st.text(max_size=60)


def _escape(octet: int) -> str:
    return f"%{octet:02X}" if octet % 2 else f"%{octet:02x}"


# The pieces decodeURIComponent cares about: escapes (valid, truncated,
# overlong, surrogate, out of range, mixed case), stray '%', hex digits and
# characters from the whole of Unicode.
percent_piece = st.one_of(
    st.sampled_from(["%", "%2", "%zz", "%%", "%25", "%3A", "%3a", "%2B", "%2F", "%20", "+"]),
    st.sampled_from(["%C3", "%A9", "%C3%A9", "%ED%A0%80", "%F0%9F%94%91", "%E2%82", "%C0%AF", "%F4%90%80%80"]),
    st.integers(0, 255).map(_escape),
    scalar.map(lambda c: "".join(_escape(b) for b in c.encode("utf-8"))),
    st.sampled_from(string.hexdigits),
    scalar,
)
percent_text = st.lists(percent_piece, max_size=12).map("".join)


def repeated(piece: st.SearchStrategy[str], low: int, high: int) -> st.SearchStrategy[str]:
    """Long strings from a short drawn piece: Hypothesis's 8 KiB budget cannot draw 20 KiB directly."""
    return st.tuples(piece.filter(bool), st.integers(low, high)).map(lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]])


cookie_names = st.one_of(
    st.sampled_from([COOKIE_NAME, "sid", "id", "__Host-session", "connect.sid.sig"]),
    st.text(no_separators, min_size=1, max_size=12).filter(lambda n: n.strip(" \t") == n),
)


def signed_values(signer: Signer, secret_count: int) -> st.SearchStrategy[str]:
    """``s:<sid>.<sig>`` values as express-session writes them, raw or encoded, for any sid."""
    return st.builds(
        lambda sid, index, encode: (encode_uri_component if encode else str)("s:" + signer.sign(sid, index)),
        st.one_of(unicode_text, st.sampled_from(["", "apple", "a.b.c", "%", "é"])),
        st.integers(0, secret_count - 1),
        st.booleans(),
    )


def cookie_values(signer: Signer, secret_count: int) -> st.SearchStrategy[str]:
    base = st.one_of(
        signed_values(signer, secret_count),
        signed_values(signer, secret_count).map(lambda v: v[:-1]),
        percent_text,
        st.text(no_separators, max_size=40),
        st.sampled_from(["", '"', '""', "s:", "s%3A", "S%3A", "s:.", "s:x."]),
    )
    return st.builds(lambda v, quote: f'"{v}"' if quote else v, base, st.booleans())


def cookie_headers(name: str, signer: Signer, secret_count: int) -> st.SearchStrategy[str]:
    """Headers built from the cookie grammar around ``name``, with junk segments and odd separators."""
    pair = st.builds(
        lambda p1, key, p2, p3, value, p4: f"{p1}{key}{p2}={p3}{value}{p4}",
        pad,
        st.one_of(st.just(name), cookie_names),
        pad,
        pad,
        cookie_values(signer, secret_count),
        pad,
    )
    junk = st.text(st.characters(codec="latin-1", exclude_characters=";"), max_size=10)
    segment = st.one_of(pair, pair, junk)
    return st.builds(
        lambda segments, separators: "".join(s + separators[i % len(separators)] for i, s in enumerate(segments)),
        st.lists(segment, max_size=6),
        st.lists(st.sampled_from(["; ", ";", " ;", ";\t", ",", "; ;"]), min_size=1, max_size=3),
    ).map(lambda h: h.removesuffix("; ").removesuffix(";"))


any_header = st.one_of(
    cookie_headers(COOKIE_NAME, FUZZ_SIGNER, len(FUZZ_SECRETS)),
    latin1_text,
    st.binary(max_size=200).map(header_from_bytes),
    repeated(latin1_text, MAX_CREDENTIAL_LENGTH - 4, MAX_CREDENTIAL_LENGTH + 4),
)

# ---------------------------------------------------------------- strategies: JSON

# Lone surrogates: orjson refuses them, so they take the stdlib fallback.
surrogate_text = st.text(st.one_of(scalar, st.characters(categories=["Cs"])), max_size=8)


def scalars(digits: int) -> st.SearchStrategy[Any]:
    """JSON scalars, integers up to ``digits`` digits (beyond 64 bits: the stdlib fallback)."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**digits), max_value=10**digits),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        surrogate_text,
    )


json_scalars = scalars(400)


def json_values(max_leaves: int = 24, leaves: st.SearchStrategy[Any] = json_scalars) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(surrogate_text, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


# cookie.expires as stores hold it: Date.toJSON output, other ISO forms (the whole calendar, any
# offset, so some fall outside it in UTC), JavaScript dates past year 9999, junk.
moments = st.datetimes(timezones=st.one_of(st.none(), st.timezones()))
recent = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))  # noqa: DTZ001 - naive bounds, zones are drawn separately
expires_values = st.one_of(
    recent.map(js_iso),
    moments.map(lambda d: d.isoformat()),
    st.sampled_from(["+275760-09-13T00:00:00.000Z", "9999-12-31T23:59:59.999-01:00", "0001-01-01T00:00:00+01:00"]),
    st.none(),
    st.text(max_size=30),
    json_scalars,
)

# Roles as hash fields and JSON strings hold them: comma lists and JSON arrays as text, lone
# surrogate escapes included.
roles_texts = st.one_of(
    st.sampled_from(["a,b", '["x",1]', "[", "[1e400]", " , ", '["\\u00e9", "\\ud83d\\udd11"]']),
    st.lists(st.one_of(surrogate_text, st.integers()), max_size=4).map(json.dumps),
    st.lists(st.text(st.characters(exclude_categories=["Cs"], exclude_characters=","), max_size=8), max_size=4).map(
        ",".join
    ),
)

# Passport users stored as whole objects (serializeUser returning the user).
user_objects = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values(6),
        "_id": json_values(6),
        "username": json_scalars,
        "displayName": json_scalars,
        "display_name": json_scalars,
        "name": json_scalars,
        "email": json_scalars,
        "emails": st.one_of(json_values(6), st.lists(st.fixed_dictionaries({"value": json_scalars}), max_size=2)),
        "roles": st.one_of(json_values(6), roles_texts),
        "role": st.one_of(json_scalars, roles_texts),
        "extra": json_values(12),
    },
)
passport_users = st.one_of(
    json_scalars,
    st.sampled_from([0, "", False, None, "42", 42, -0.0, 1e21, 1.5e-7, 2**53 + 1, [1, [2, None]], {}]),
    user_objects,
)

session_documents = st.fixed_dictionaries(
    {},
    optional={
        "cookie": st.one_of(
            st.fixed_dictionaries(
                {"expires": expires_values},
                optional={"originalMaxAge": json_scalars, "httpOnly": st.booleans(), "path": st.just("/")},
            ),
            json_values(4),
        ),
        "passport": st.one_of(st.fixed_dictionaries({}, optional={"user": passport_users}), json_values(4)),
        "views": json_values(8),
    },
)


def dump_json(value: Any, ascii_only: bool) -> bytes:
    """JSON bytes; lone surrogates become \\uXXXX escapes or CESU-8 (invalid UTF-8) bytes."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


WRAPPERS = ((b"[", b"]"), (b'{"a":', b"}"), (b'{"a":[', b"]}"))


def nest(payload: bytes, depth: int, wrapper: int) -> bytes:
    """``payload`` inside ``depth`` arrays or objects, built as bytes: json.dumps would recurse."""
    opening, closing = WRAPPERS[wrapper]
    return opening * depth + payload + closing * depth


# Deep JSON around the limits that matter: 16 (attributes), ~33 (protobuf clients), ~500
# (Python recursion), 1024 (orjson), 1500.
depths = st.one_of(st.sampled_from([16, 17, 33, 500, 1000, 1024, 1025]), st.integers(0, 1500))
deep_values = st.builds(nest, st.sampled_from([b"1", b"null", b"[]", b'{"id":"x"}']), depths, st.integers(0, 2))
deep_sessions = st.one_of(
    deep_values,
    deep_values.map(lambda v: b'{"cookie":{},"x":' + v + b"}"),
    deep_values.map(lambda v: b'{"cookie":{},"passport":{"user":' + v + b"}}"),
    deep_values.map(lambda v: b'{"cookie":{},"passport":{"user":{"id":' + v + b"}}}"),
    deep_values.map(lambda v: b'{"cookie":{},"passport":{"user":{"id":1,"profile":' + v + b"}}}"),
)
# Integer literals Python itself refuses (over 4300 digits) or that no double holds.
long_numbers = st.builds(
    lambda digits, where: where.replace(b"N", digits),
    st.integers(309, 6000).map(lambda n: b"9" * n),
    st.sampled_from(
        [
            b"N",
            b'{"cookie":{},"n":N}',
            b'{"cookie":{},"passport":{"user":N}}',
            b'{"cookie":{},"passport":{"user":{"id":-N}}}',
        ]
    ),
)

stored_raw = st.one_of(
    st.builds(dump_json, st.one_of(session_documents, json_values()), st.booleans()),
    st.binary(max_size=200),
    deep_sessions,
    long_numbers,
    st.sampled_from(
        [b"1e400", b'{"cookie":{},"n":-1e400}', b"\xef\xbb\xbf{}", b'{"cookie":{}', b"NaN", b'"\\ud800"', b"[]" * 3]
    ),
)
# Key PTTLs: none, no TTL, and any TTL Redis accepts (PX up to ~9.2e18 ms).
pttls = st.one_of(st.sampled_from([-2, -1, 0, 10**15, 2**63 - 1]), st.integers(0, 10**9), st.integers(0, 2**63 - 1))
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)  # a Timestamp's range ends here

# ---------------------------------------------------------------- cookie parsing and verification


@settings(max_examples=examples(250), deadline=None)
@given(
    header=st.one_of(any_header, st.text(max_size=60)), name=st.one_of(st.just(COOKIE_NAME), cookie_names, st.just(""))
)
def test_find_cookie_is_cookie_0_7_2_parse(header: str, name: str) -> None:
    assert find_cookie(header, name) == ref_find_cookie(header, name)


@settings(max_examples=examples(250), deadline=None)
@given(header=any_header)
def test_read_credential_answers_every_latin1_header(header: str) -> None:
    credential = read_credential(FUZZ_SIGNER, COOKIE_NAME, header=header)
    check_credential(credential, len(FUZZ_SECRETS))
    assert credential == ref_read_credential(FUZZ_SECRETS, COOKIE_NAME, header=header)


@settings(max_examples=examples(200), deadline=None)
@given(raw=st.one_of(st.binary(max_size=300), st.builds(str.encode, any_header, st.just("utf-8"))))
def test_read_credential_answers_any_header_bytes(raw: bytes) -> None:
    header = header_from_bytes(raw)
    assert header.encode("latin-1") == raw
    credential = read_credential(FUZZ_SIGNER, COOKIE_NAME, header=header)
    check_credential(credential, len(FUZZ_SECRETS))
    assert credential == ref_read_credential(FUZZ_SECRETS, COOKIE_NAME, header=header)


@settings(max_examples=examples(200), deadline=None)
@given(
    value=st.one_of(
        cookie_values(FUZZ_SIGNER, len(FUZZ_SECRETS)).map(lambda v: f" {v}\t"),
        st.text(max_size=80),
        repeated(percent_text, MAX_CREDENTIAL_LENGTH - 2, MAX_CREDENTIAL_LENGTH + 2),
    )
)
def test_read_credential_answers_every_bare_value(value: str) -> None:
    credential = read_credential(FUZZ_SIGNER, COOKIE_NAME, value=value)
    check_credential(credential, len(FUZZ_SECRETS))
    assert credential == ref_read_credential(FUZZ_SECRETS, COOKIE_NAME, value=value)


secrets_lists = st.lists(st.text(min_size=1, max_size=24), min_size=1, max_size=3)
other_cookie = st.builds(
    lambda key, value: f"{key}={value}",
    st.text(no_separators, max_size=8),
    st.text(st.characters(codec="latin-1", exclude_characters=";"), max_size=12),
)
junk_segment = st.text(no_separators, max_size=6)


@dataclass(frozen=True)
class Minted:
    name: str
    secrets: list[str]
    index: int
    sid: str
    signed: str  # 's:' + sign(sid)
    header: str


@st.composite
def minted_headers(draw: st.DrawFn) -> Minted:
    """A header carrying ``name=encodeURIComponent('s:' + sign(sid))`` among random other cookies."""
    name = draw(cookie_names)
    secrets = draw(secrets_lists)
    index = draw(st.integers(0, len(secrets) - 1))
    sid = draw(st.one_of(st.text(max_size=50), st.sampled_from(["", ".", "a.b", "s:x", "%", "%25", '"', ";"])))
    signed = "s:" + Signer(secrets).sign(sid, index)
    value = encode_uri_component(signed)
    if draw(st.booleans()):
        value = f'"{value}"'
    # Cookies before ours must not share its name: the first occurrence wins.
    before = draw(st.lists(st.one_of(other_cookie, junk_segment), max_size=3))
    assume(all(segment.partition("=")[0].strip(" \t") != name or "=" not in segment for segment in before))
    after = draw(st.lists(st.one_of(other_cookie, junk_segment), max_size=3))
    ours = f"{draw(pad)}{name}{draw(pad)}={draw(pad)}{value}{draw(pad)}"
    header = ";".join([*before, ours, *after])
    return Minted(name, secrets, index, sid, signed, header)


@settings(max_examples=examples(200), deadline=None)
@given(minted=minted_headers())
def test_a_minted_cookie_verifies_to_its_sid(minted: Minted) -> None:
    signer = Signer(minted.secrets)
    expected_index = first_index(minted.secrets, minted.index)
    credentials = [
        read_credential(signer, minted.name, header=minted.header),
        read_credential(signer, minted.name, header=header_from_bytes(minted.header.encode("latin-1"))),
        read_credential(signer, minted.name, value=encode_uri_component(minted.signed)),
    ]
    if ref_value(minted.signed) == minted.signed:
        # Unencoded, the value survives only if it holds no valid percent escape ('%00' would decode).
        credentials.append(read_credential(signer, minted.name, value=minted.signed))
    for credential in credentials:
        assert credential.session_id == minted.sid
        assert credential.secret_index == expected_index
        assert credential.reason is (Reason.EMPTY_SESSION_ID if minted.sid == "" else None)


# Replacement characters: any scalar value, the base64 alphabet, and the
# characters with a meaning in a signed value.
replacements = st.one_of(scalar, st.sampled_from([*string.ascii_letters, *string.digits, "+", "/", ".", ":", "="]))


@settings(max_examples=examples(250), deadline=None)
@given(minted=minted_headers(), data=st.data())
def test_one_changed_character_never_verifies(minted: Minted, data: st.DataObject) -> None:
    """Flip one character of ``s:<sid>.<sig>`` (before encoding).

    Positions 0 and 1 are the ``s:`` prefix: the value is then not signed.
    Any other position changes the sid, the separator or the signature;
    ``unsign`` splits at the last '.', recomputes the HMAC of what precedes it
    and compares the whole string, which now differs from ``sign(sid')`` for
    every secret (barring an HMAC collision): SIGNATURE_MISMATCH. The
    signature's 43 characters are drawn as often as the rest.
    """
    full = minted.signed
    signature_start = len(full) - 43
    position = data.draw(
        st.one_of(st.integers(signature_start, len(full) - 1), st.integers(0, len(full) - 1)), label="position"
    )
    replacement = data.draw(replacements.filter(lambda c: c != full[position]), label="replacement")
    tampered = full[:position] + replacement + full[position + 1 :]
    header = f"{minted.name}={encode_uri_component(tampered)}"
    credential = read_credential(Signer(minted.secrets), minted.name, header=header)
    expected = Reason.NOT_SIGNED if position < 2 else Reason.SIGNATURE_MISMATCH
    assert credential == Credential(expected)


@settings(max_examples=examples(250), deadline=None)
@given(minted=minted_headers(), data=st.data())
def test_a_changed_wire_character_verifies_only_if_it_decodes_the_same(minted: Minted, data: st.DataObject) -> None:
    """Flip one character of the header as sent (``s%3A…%2B…``).

    The outcome follows the reference model exactly. Decoding can absorb a
    change (``%2B`` → ``%2b``), so a tampered header verifies only when it
    still carries the very same signed value.
    """
    start = minted.header.index("=", minted.header.index(minted.name)) + 1
    position = data.draw(st.integers(start, len(minted.header) - 1), label="position")
    replacement = data.draw(
        st.one_of(latin1, st.sampled_from([*string.hexdigits, "%"])).filter(lambda c: c != minted.header[position]),
        label="replacement",
    )
    header = minted.header[:position] + replacement + minted.header[position + 1 :]
    credential = read_credential(Signer(minted.secrets), minted.name, header=header)
    assert credential == ref_read_credential(minted.secrets, minted.name, header=header)
    if credential.session_id is not None:
        assert ref_find_cookie(header, minted.name) == minted.signed


# ---------------------------------------------------------------- decodeURIComponent


def _outcome(decode: Callable[[str], str], text: str) -> str | None:
    try:
        return decode(text)
    except ValueError:
        return None


@settings(max_examples=examples(400), deadline=None)
@given(text=st.one_of(percent_text, st.text(max_size=40)))
def test_decode_uri_component_is_javascripts(text: str) -> None:
    ours = _outcome(decode_uri_component, text)
    reference = _outcome(ref_decode_uri_component, text)
    assert ours == reference
    # It raises exactly on a malformed escape or escapes that are not UTF-8.
    if has_malformed_escape(text):
        assert ours is None
    if ours is None and not has_malformed_escape(text):
        with pytest.raises(UnicodeDecodeError):
            urllib.parse.unquote(text, errors="strict")
    # Where urllib also decodes (it leaves malformed escapes alone), both agree.
    stdlib = _outcome(lambda t: urllib.parse.unquote(t, errors="strict"), text)
    if ours is not None and stdlib is not None:
        assert ours == stdlib


@settings(max_examples=examples(100), deadline=None)
@given(text=st.text(max_size=60))
def test_decode_uri_component_inverts_encode_uri_component(text: str) -> None:
    encoded = encode_uri_component(text)
    assert decode_uri_component(encoded) == text
    # The encoded form has no space, TAB or '"' left to trim or unquote.
    assert value_from_text(encoded) == text


# ---------------------------------------------------------------- stored sessions


def _not_json(constant: str) -> Any:
    msg = f"{constant} is not JSON"
    raise ValueError(msg)


ORJSON_DEPTH = 1024  # JSON nested deeper is refused as unreadable (V8 would read it: a parity gap, not a crash)


def _expected_store_reason(raw: bytes, pttl_ms: int) -> set[Reason]:
    """The reasons judge_stored may give, from an independent reading of the rules."""
    if not raw or pttl_ms == -2:
        return {Reason.SESSION_NOT_FOUND}
    if bracket_depth(raw) > ORJSON_DEPTH:
        return {Reason.CORRUPT_SESSION}
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # the reference parses whatever depth it is given
    try:
        # JSON.parse: every number is a double; NaN and Infinity are not JSON.
        session = json.loads(raw.decode("utf-8", "replace"), parse_constant=_not_json, parse_int=float)
    except ValueError:
        return {Reason.CORRUPT_SESSION}
    finally:
        sys.setrecursionlimit(previous)
    if session is None or session is False or session == "" or (type(session) in (int, float) and session == 0):
        return {Reason.SESSION_NOT_FOUND}
    if not isinstance(session, dict) or not isinstance(session.get("cookie"), dict):
        return {Reason.CORRUPT_SESSION}
    return {Reason.SESSION_ACTIVE, Reason.SESSION_EXPIRED} if pttl_ms < 0 else {Reason.SESSION_ACTIVE}


def _expected_expiry(pttl_ms: int) -> datetime:
    """Now plus the key's TTL, held to what a Timestamp can carry."""
    try:
        return min(NOW + timedelta(milliseconds=pttl_ms), LATEST)
    except OverflowError:
        return LATEST


@settings(max_examples=examples(300), deadline=None)
@given(raw=stored_raw, pttl_ms=pttls)
def test_judge_stored_answers_every_stored_value(raw: bytes, pttl_ms: int) -> None:
    with production_recursion_limit():
        judgement = judge_stored(redis_stored(raw, pttl_ms), NOW)
    assert judgement.reason in STORE_REASONS
    assert judgement.reason in _expected_store_reason(raw, pttl_ms)
    if judgement.reason is Reason.SESSION_ACTIVE:
        if pttl_ms >= 0:
            assert judgement.expire_time == _expected_expiry(pttl_ms)
        if judgement.user is not None:
            assert isinstance(judgement.user.user_id, str)
    else:
        assert judgement.user is None
    if judgement.reason is Reason.SESSION_EXPIRED:
        assert judgement.expire_time is not None
        assert judgement.expire_time <= NOW


@settings(max_examples=examples(200), deadline=None)
@given(raw=st.one_of(stored_raw, st.binary(max_size=300)))
def test_parse_json_raises_only_value_error(raw: bytes) -> None:
    try:
        with production_recursion_limit():
            parse_json(raw)
    except ValueError:
        return  # JSON.parse throws too: the service answers CORRUPT_SESSION


@settings(max_examples=examples(250), deadline=None)
@given(document=session_documents, ascii_only=st.booleans(), pttl_ms=pttls)
def test_a_judged_session_always_makes_a_response(document: dict[str, Any], ascii_only: bool, pttl_ms: int) -> None:
    """The servicer's own ``_judge``: judge_stored, expire_time, the Passport user, the profile."""
    raw = dump_json(document, ascii_only)
    with production_recursion_limit():
        response, pending = make_servicer()._judge(Credential(None, "sid", 0), redis_stored(raw, pttl_ms))
    assert pending is None
    check_response(response)
    assert response.session_id == "sid"
    if response.authenticated:
        assert response.reason == pb.REASON_SESSION_ACTIVE
        assert response.HasField("user")


@settings(max_examples=examples(250), deadline=None)
@given(raw=stored_raw, pttl_ms=pttls)
def test_every_stored_value_makes_a_response(raw: bytes, pttl_ms: int) -> None:
    """``_judge`` on raw stored bytes: deep, huge-numbered, edge-dated and garbage sessions included."""
    with production_recursion_limit():
        response, pending = make_servicer()._judge(Credential(None, "sid", 0), redis_stored(raw, pttl_ms))
    assert pending is None
    check_response(response)


# ---------------------------------------------------------------- user profiles

user_records = st.one_of(
    user_objects,
    st.dictionaries(st.text(max_size=10), json_values(), max_size=6),
)


@settings(max_examples=examples(250), deadline=None)
@given(record=user_records, ascii_only=st.booleans(), user_id=st.text(max_size=20))
def test_build_profile_serializes_every_json_record(record: dict[str, Any], ascii_only: bool, user_id: str) -> None:
    """Records as the store reads them (parse_json: orjson, or the stdlib with surrogates scrubbed)."""
    with production_recursion_limit():
        parsed = parse_json(dump_json(record, ascii_only))
        assert isinstance(parsed, dict)
        profile = profile_message(UserRecord(user_id, parsed), parsed)
    note(repr(profile))
    assert profile.id == user_id
    wire = pb.ValidateSessionResponse(user=profile).SerializeToString()
    assert pb.ValidateSessionResponse.FromString(wire).user == profile


@settings(max_examples=examples(100), deadline=None)
@given(
    raw=st.one_of(
        deep_values, deep_values.map(lambda v: b'{"id":"d","roles":' + json.dumps(v.decode()).encode() + b"}")
    )
)
def test_build_profile_serializes_deep_records(raw: bytes) -> None:
    """Records nested past what Struct, Python's recursion and protobuf clients' parsers allow."""
    with production_recursion_limit():
        try:
            record = parse_json(raw)
        except ValueError:
            return  # nested past 1024 levels: refused as unreadable, no record
        if not isinstance(record, dict):
            return
        profile = profile_message(UserRecord("d", record), record)
    wire = pb.ValidateSessionResponse(user=profile).SerializeToString()
    assert pb.ValidateSessionResponse.FromString(wire).user == profile


@settings(max_examples=examples(100), deadline=None)
@given(fields=st.dictionaries(st.binary(max_size=12), st.one_of(st.binary(max_size=40), percent_text.map(str.encode))))
def test_build_profile_serializes_every_hash_record(fields: dict[bytes, bytes]) -> None:
    with production_recursion_limit():
        record = RedisSessionStore._user(None, fields)
    if not fields:
        assert record is None
        return
    assert record is not None
    profile = profile_message(UserRecord("7", record), record)
    assert pb.UserProfile.FromString(profile.SerializeToString()) == profile


# ---------------------------------------------------------------- over RPC, against the real service


@dataclass(frozen=True)
class RpcCase:
    request: pb.ValidateSessionRequest
    sid: str | None = None  # set when the cookie is validly signed
    index: int = 0
    stored: bytes | None = None  # what to SET under the session key (None: no key)
    wrong_type: bool = False  # a hash under the session key instead
    ttl_s: int | None = None
    user_record: bytes | None = None  # what to SET under the scalar Passport user's record key


def _request(kind: str | None, content: str | bytes, encoding: str = "utf-8") -> pb.ValidateSessionRequest:
    """A request carrying ``content`` in the ``kind`` field (bytes as latin-1 text, text as ``encoding`` bytes)."""
    if kind is None:
        return pb.ValidateSessionRequest()
    if kind == "cookie_header":
        raw = content if isinstance(content, bytes) else content.encode(encoding)
        return pb.ValidateSessionRequest(cookie_header=raw)
    text = content.decode("latin-1") if isinstance(content, bytes) else content
    if kind == "signed_value":
        return pb.ValidateSessionRequest(signed_value=text)
    return pb.ValidateSessionRequest(cookie_header_text=text)


kinds = st.sampled_from(["cookie_header", "cookie_header_text", "signed_value", None])
rpc_secrets = ["fuzz: the current signing secret, comfortably over 32 bytes"]


@st.composite
def rpc_cases(draw: st.DrawFn, signer: Signer) -> RpcCase:
    kind = draw(kinds)
    shape = draw(st.sampled_from(["random", "random", "huge", "minted", "minted", "minted"]))
    if shape == "random":
        content: str | bytes = draw(
            st.one_of(
                st.binary(max_size=300),
                cookie_headers(SERVICE_COOKIE, signer, 2),
                st.text(max_size=100),
                cookie_values(signer, 2),
            )
        )
        return RpcCase(_request(kind, content))
    if shape == "huge":
        size = draw(st.integers(MAX_CREDENTIAL_LENGTH - 64, 20 * 1024))
        piece = draw(st.one_of(latin1_text, percent_text).filter(bool))
        body = (piece * (size // len(piece) + 1))[:size]
        return RpcCase(_request(kind, f"{SERVICE_COOKIE}={body}"))
    sid = draw(st.one_of(st.text(max_size=40), st.sampled_from(["", "a.b", "é", "%"])))
    index = draw(st.integers(0, 1))
    value = encode_uri_component("s:" + signer.sign(sid, index))
    others = draw(
        st.lists(other_cookie.filter(lambda c: c.partition("=")[0].strip(" \t") != SERVICE_COOKIE), max_size=2)
    )
    header = "; ".join([*others, f"{SERVICE_COOKIE}={value}"])
    request = _request(kind, value if kind == "signed_value" else header, "latin-1")
    if kind is None:
        return RpcCase(request)
    document = draw(st.one_of(session_documents, session_documents, json_values()))
    stored = draw(
        st.one_of(
            st.just(dump_json(document, draw(st.booleans()))),
            st.none(),
            st.binary(max_size=40),
            deep_sessions,
            long_numbers,
        )
    )
    user_record = draw(st.one_of(st.none(), st.builds(dump_json, user_records, st.booleans()), st.binary(max_size=30)))
    return RpcCase(
        request,
        sid=sid,
        index=index,
        stored=stored,
        wrong_type=draw(st.integers(0, 9)) == 0,
        ttl_s=draw(st.one_of(st.none(), st.integers(1, 10**6), st.sampled_from([10**12, 10**15]))),
        user_record=user_record,
    )


def _user_key(raw: bytes | None, ttl_s: int | None) -> str | None:
    """The user record key the service will read for this stored session, if any."""
    if raw is None:
        return None
    judgement = judge_stored(redis_stored(raw, -1 if ttl_s is None else ttl_s * 1000), datetime.now(UTC))
    if judgement.user is None or judgement.user.record is not None:
        return None
    return USER_KEY.replace("{id}", judgement.user.user_id)


@pytest.fixture(scope="module")
def stub(fuzz_service: FuzzService) -> Any:
    with grpc.insecure_channel(fuzz_service.address) as channel:
        yield pb_grpc.SessionValidatorStub(channel)


@pytest.mark.integration
def test_every_request_gets_a_verdict_over_rpc(fuzz_service: FuzzService, stub: pb_grpc.SessionValidatorStub) -> None:
    client = fuzz_service.redis

    @settings(max_examples=examples(300), deadline=None)
    @given(case=rpc_cases(fuzz_service.signer))
    def check(case: RpcCase) -> None:
        user_key = None
        if case.sid is not None:
            key = SESSION_PREFIX + case.sid
            client.delete(key)
            if case.wrong_type:
                client.hset(key, mapping={"cookie": "{}"})
            elif case.stored is not None:
                client.set(key, case.stored, ex=case.ttl_s)
            user_key = _user_key(case.stored, case.ttl_s) if not case.wrong_type else None
            if user_key is not None:
                client.delete(user_key)
                if case.user_record is not None:
                    client.set(user_key, case.user_record)
        response = stub.ValidateSession(case.request, timeout=10)
        note(f"{response}")
        check_response(response, SERVICE_COOKIE)
        if case.sid is None:
            return
        assert response.session_id == case.sid
        assert response.secret_index == case.index
        if case.sid == "":
            assert response.reason == pb.REASON_EMPTY_SESSION_ID
        elif case.wrong_type:
            assert response.reason == pb.REASON_CORRUPT_SESSION
        else:
            pttl = -2 if case.stored is None else (-1 if case.ttl_s is None else case.ttl_s * 1000)
            expected = judge_stored(redis_stored(case.stored, pttl), datetime.now(UTC)).reason
            assert response.reason == REASONS[expected]
            assert response.verdict == VERDICTS[expected.verdict]

    check()


@pytest.mark.integration
def test_every_batch_gets_a_verdict_per_credential(
    fuzz_service: FuzzService, stub: pb_grpc.SessionValidatorStub
) -> None:
    @settings(max_examples=examples(30), deadline=None)
    @given(cases=st.lists(rpc_cases(fuzz_service.signer), max_size=5))
    def check(cases: list[RpcCase]) -> None:
        batch = pb.ValidateSessionsRequest(requests=[case.request for case in cases])
        response = stub.ValidateSessions(batch, timeout=10)
        assert len(response.responses) == len(cases)
        for item in response.responses:
            check_response(item, SERVICE_COOKIE)

    check()


# Length-delimited fields 1-3 (the credential oneof) and 4 (unknown), any bytes inside: UTF-8 or not.
wire_fields = st.lists(
    st.builds(
        lambda tag, body: bytes([tag]) + _varint(len(body)) + body,
        st.sampled_from([0x0A, 0x12, 0x1A, 0x22]),
        st.one_of(st.binary(max_size=60), latin1_text.map(lambda t: t.encode("latin-1"))),
    ),
    min_size=1,
    max_size=3,
).map(b"".join)


@pytest.mark.integration
def test_every_well_formed_message_gets_a_verdict(fuzz_service: FuzzService) -> None:
    """Raw request bytes: any well-formed protobuf message is answered with a verdict, text fields
    that are not UTF-8 included; a body that is not protobuf at all gets an error, never INTERNAL."""
    with grpc.insecure_channel(fuzz_service.address) as channel:
        call = channel.unary_unary(
            "/sessionvalidator.v1.SessionValidator/ValidateSession", request_serializer=None, response_deserializer=None
        )

        @settings(max_examples=examples(150), deadline=None)
        @given(wire=st.one_of(wire_fields, st.binary(max_size=200)))
        def check(wire: bytes) -> None:
            try:
                empty_pb2.Empty.FromString(wire)  # every field unknown: only the wire format is checked
                well_formed = True
            except DecodeError:
                well_formed = False
            outcome: bytes | grpc.RpcError
            try:
                outcome = call(wire, timeout=10)
            except grpc.RpcError as exc:
                outcome = exc
            if isinstance(outcome, bytes):
                check_response(pb.ValidateSessionResponse.FromString(outcome), SERVICE_COOKIE)
                return
            note(f"{outcome.code()}: {outcome.details()}")
            assert not well_formed
            assert outcome.code() != grpc.StatusCode.INTERNAL

        check()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
