"""The Cookie header reaches the validator byte for byte, however the caller holds it."""

from __future__ import annotations

import asyncio

import pytest

from sessionvalidator import AsyncClient, Client
from sessionvalidator._requests import cookie_header_request, headers_request

pytestmark = pytest.mark.integration


def test_latin1_session_id_as_bytes(addr: str, latin1_cookie: bytes) -> None:
    assert b"\xe9" in latin1_cookie
    with Client(addr) as client:
        validation = client.validate_cookie_header(latin1_cookie)
    assert validation.valid
    assert validation.session_id == "é"
    assert validation.user is not None
    assert validation.user.id == "latin"


def test_latin1_session_id_as_latin1_text(addr: str, latin1_cookie: bytes) -> None:
    """What ASGI/WSGI frameworks hand over: the header bytes decoded as latin-1."""
    text = latin1_cookie.decode("latin-1")
    with Client(addr) as client:
        validation = client.validate_cookie_header(text)
    assert validation.valid
    assert validation.session_id == "é"


def test_latin1_session_id_async_bytes_and_text(addr: str, latin1_cookie: bytes) -> None:
    async def run() -> list[bool]:
        async with AsyncClient(addr) as client:
            as_bytes = await client.validate_cookie_header(latin1_cookie)
            as_text = await client.validate_cookie_header(latin1_cookie.decode("latin-1"))
            as_headers = await client.validate_headers([(b"cookie", latin1_cookie)])
        return [as_bytes.valid, as_text.valid, as_headers.valid]

    assert asyncio.run(run()) == [True, True, True]


def test_utf8_reencoding_breaks_the_signature(addr: str, latin1_cookie: bytes) -> None:
    """Proof the bytes matter: re-encoding the text as UTF-8 (a common bug) is another cookie."""
    utf8 = latin1_cookie.decode("latin-1").encode("utf-8")
    with Client(addr) as client:
        validation = client.validate_cookie_header(utf8)
    assert validation.verdict == "VERDICT_BAD_SIGNATURE"


def test_text_beyond_latin1_is_refused(addr: str) -> None:
    """Text no header bytes decode to (a character above U+00FF) is refused before any call, as Node refuses it."""
    header = "connect.sid=s:\u20ac.signature"
    with pytest.raises(ValueError, match="U\\+00FF"):
        cookie_header_request(header)
    with pytest.raises(ValueError, match="U\\+00FF"):
        headers_request([("cookie", header)])
    with Client(addr) as client, pytest.raises(ValueError, match="U\\+00FF"):
        client.validate_cookie_header(header)


def test_several_cookie_headers_are_joined_in_order(addr: str, valid_cookie: bytes) -> None:
    headers = [(b"host", b"x"), (b"cookie", b"theme=dark"), (b"Cookie", valid_cookie), (b"COOKIE", b"lang=en")]
    assert headers_request(headers).cookie_header == b"theme=dark; " + valid_cookie + b"; lang=en"
    with Client(addr) as client:
        validation = client.validate_headers(headers)
    assert validation.valid
    assert validation.session_id == "object-user-session-000000000002"


def test_first_connect_sid_wins_across_headers(addr: str, valid_cookie: bytes) -> None:
    """As in Node: the first connect.sid counts, even when a later header holds a valid one."""
    with Client(addr) as client:
        validation = client.validate_headers([(b"cookie", b"connect.sid=garbage"), (b"cookie", valid_cookie)])
    assert validation.verdict == "VERDICT_MALFORMED"
    assert validation.reason == "REASON_NOT_SIGNED"


def test_header_mapping_and_text_pairs(addr: str, valid_cookie: bytes) -> None:
    text = valid_cookie.decode("latin-1")
    with Client(addr) as client:
        assert client.validate_headers({"Cookie": text}).valid
        assert client.validate_headers([("cookie", text)]).valid
        assert client.validate_headers({"accept": "*/*"}).reason == "REASON_NO_COOKIE"


def test_no_cookie_header_is_missing(addr: str) -> None:
    with Client(addr) as client:
        for validation in (client.validate_cookie_header(None), client.validate_headers([(b"host", b"x")])):
            assert validation.verdict == "VERDICT_MISSING"
            assert validation.reason == "REASON_NO_COOKIE"
            assert not validation.valid
