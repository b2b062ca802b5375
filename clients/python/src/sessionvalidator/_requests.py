"""Requests built from what callers hold: header bytes, header text, header lists, a bare value.

The Cookie header must reach the validator byte for byte (it reads the bytes
as latin-1, exactly as Node does), so text is turned back into the bytes it
came from wherever that is possible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sessionvalidator.v1 import session_validator_service_pb2 as pb

__all__ = ["Headers", "cookie_header_request", "headers_request", "signed_value_request"]

#: ASGI ``scope["headers"]``, Starlette's ``request.headers.raw``, a list of
#: ``(name, value)`` pairs or a mapping (names match case-insensitively).
Headers = Iterable[tuple[bytes | str, bytes | str]] | Mapping[str, str] | Mapping[bytes, bytes]

_COOKIE = b"cookie"


def _as_bytes(text: str) -> bytes:
    """Return the bytes a latin-1 decoded header came from.

    Text with a character above U+00FF cannot have come from header bytes
    (Node's http refuses to write such a header): :class:`ValueError`, before
    any call. The same rule in every client (tests/vectors/client_conformance.json).
    """
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        msg = (
            "cookie header text has a character above U+00FF, which no header bytes decode to; "
            "pass the raw header bytes"
        )
        raise ValueError(msg) from None


def cookie_header_request(header: bytes | bytearray | str | None) -> pb.ValidateSessionRequest:
    """Build the request for one Cookie header.

    Bytes are sent as they are. Text is taken to be the header bytes decoded as
    latin-1 (what ASGI and WSGI frameworks, ``http.server`` and Node give you),
    so it is encoded back to those bytes; text that cannot have come from bytes
    that way (a character above U+00FF) raises :class:`ValueError`, as Node
    refuses it. ``None`` means the request had no Cookie header.
    """
    if header is None:
        return pb.ValidateSessionRequest()
    if isinstance(header, bytes | bytearray):
        return pb.ValidateSessionRequest(cookie_header=bytes(header))
    return pb.ValidateSessionRequest(cookie_header=_as_bytes(header))


def signed_value_request(value: str) -> pb.ValidateSessionRequest:
    """Build the request for a bare cookie value (``s%3A<sid>.<sig>`` or ``s:<sid>.<sig>``)."""
    return pb.ValidateSessionRequest(signed_value=value)


def _is_cookie(name: bytes | str) -> bool:
    if isinstance(name, str):
        return name.lower() == "cookie"
    return name.lower() == _COOKIE


def cookie_values(headers: Headers) -> list[bytes | str]:
    """Return the values of every Cookie header in ``headers``, in order."""
    pairs: Iterable[tuple[bytes | str, bytes | str]]
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [value for name, value in pairs if _is_cookie(name)]


def headers_request(headers: Headers) -> pb.ValidateSessionRequest:
    """Build the request for all the Cookie headers of a request, joined with ``"; "`` as Node joins them."""
    values = cookie_values(headers)
    if not values:
        return pb.ValidateSessionRequest()
    raw = [value if isinstance(value, bytes) else _as_bytes(value) for value in values]
    return pb.ValidateSessionRequest(cookie_header=b"; ".join(raw))
