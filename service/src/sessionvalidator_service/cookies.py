"""Cookie header parsing with byte-for-byte parity with npm ``cookie`` 0.7.2.

express-session 1.18.1 and later read the session cookie with
``cookie.parse(req.headers.cookie)[name]``. Node hands that function the raw
header bytes decoded as latin-1, so callers of this module pass ``str`` values
whose characters are all in U+0000..U+00FF (see :func:`header_from_bytes`).

The rules reproduced here (``cookie`` 0.7.2 ``index.js``):

* a header shorter than two characters holds no cookie;
* pairs are separated by ``;`` only, a segment without ``=`` is skipped;
* keys and values are trimmed of space (0x20) and TAB (0x09) only;
* the first occurrence of a name wins;
* a value that starts *and* ends with ``"`` loses both quotes;
* a value is passed through ``decodeURIComponent`` only when it contains
  ``%``, and kept whole when decoding fails (never partially decoded,
  ``+`` never becomes a space).
"""

from __future__ import annotations

import re

__all__ = [
    "decode_uri_component",
    "decode_value",
    "find_cookie",
    "header_from_bytes",
    "value_from_text",
]

_SPACE_TAB = " \t"
_ESCAPE_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_ASCII_ESCAPE = re.compile(r"%[0-7][0-9A-Fa-f]")


def header_from_bytes(raw: bytes) -> str:
    """Return the string Node would hold for these Cookie header bytes."""
    return raw.decode("latin-1")


def _ascii_char(match: re.Match[str]) -> str:
    return chr(int(match.group()[1:], 16))


def decode_uri_component(text: str) -> str:
    """Decode like JavaScript's ``decodeURIComponent``.

    Raises :class:`ValueError` wherever JavaScript throws ``URIError``: a
    ``%`` not followed by two hex digits, or escapes that do not form valid
    UTF-8 (truncated, overlong, surrogate or out-of-range sequences).
    """
    if "%" not in text:
        return text
    if text.count("%") == len(_ASCII_ESCAPE.findall(text)):
        # Every escape is one ASCII byte (the common `s%3A…` with `%2F`, `%2B`):
        # each decodes on its own, nothing can be malformed.
        return _ASCII_ESCAPE.sub(_ascii_char, text)
    parts: list[str] = []
    pos = 0
    for match in _ESCAPE_RUN.finditer(text):
        start = match.start()
        literal = text[pos:start]
        if "%" in literal:
            msg = "malformed percent escape"
            raise ValueError(msg)
        parts.append(literal)
        # A run of escapes must be whole UTF-8: JavaScript reads each lead
        # byte's continuation bytes from the escapes that follow it, and
        # Python's strict decoder rejects the same sequences it does.
        parts.append(bytes.fromhex(match.group().replace("%", "")).decode("utf-8"))
        pos = match.end()
    tail = text[pos:]
    if "%" in tail:
        msg = "malformed percent escape"
        raise ValueError(msg)
    parts.append(tail)
    return "".join(parts)


def decode_value(raw: str) -> str:
    """Apply ``cookie``'s ``tryDecode``: decode, or keep the raw value whole."""
    if "%" not in raw:
        return raw
    try:
        return decode_uri_component(raw)
    except ValueError:
        return raw


def _unquote_and_decode(text: str, start: int, end: int) -> str:
    """Trim, unquote and decode ``text[start:end]`` as ``cookie.parse`` does."""
    while start < end and text[start] in _SPACE_TAB:
        start += 1
    while end > start and text[end - 1] in _SPACE_TAB:
        end -= 1
    if end > start and text[start] == '"' and text[end - 1] == '"':
        # A lone '"' gives start > end, which JavaScript's slice (and
        # Python's) turns into an empty string.
        start += 1
        end -= 1
    return decode_value(text[start:end])


def find_cookie(header: str, name: str) -> str | None:
    """Return ``cookie.parse(header)[name]``, or ``None`` when it is absent.

    The walk is the one ``cookie`` 0.7.2 makes, stopping at the first pair
    named ``name`` (the first occurrence wins, so later pairs cannot matter).
    """
    length = len(header)
    if length < 2:  # noqa: PLR2004 - cookie.parse returns {} below two chars
        return None
    index = 0
    while index < length:
        eq_idx = header.find("=", index)
        if eq_idx == -1:
            return None
        end_idx = header.find(";", index)
        if end_idx == -1:
            end_idx = length
        elif eq_idx > end_idx:
            # This segment has no '='; resume after the ';' just before it.
            index = header.rfind(";", 0, eq_idx) + 1
            continue
        key_start = index
        key_end = eq_idx
        while key_start < key_end and header[key_start] in _SPACE_TAB:
            key_start += 1
        while key_end > key_start and header[key_end - 1] in _SPACE_TAB:
            key_end -= 1
        if header[key_start:key_end] == name:
            return _unquote_and_decode(header, eq_idx + 1, end_idx)
        index = end_idx + 1
    return None


def value_from_text(value: str) -> str:
    """Treat ``value`` as a bare cookie value: trim, unquote and decode it."""
    return _unquote_and_decode(value, 0, len(value))
