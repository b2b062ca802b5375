"""JavaScript emulation: what ``JSON.parse`` and ``String()`` do in Node.

express-session stores sessions with ``JSON.stringify`` and reads them back
with ``JSON.parse``; Passport's ids become strings with ``String()``. These
functions reproduce both exactly, including the corners (integers beyond 2**53,
lone surrogates, invalid UTF-8, deep nesting) where Python differs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["js_string", "parse_json"]

_END = object()


# An escaped backslash (skipped), a surrogate pair (kept), or a lone surrogate escape (replaced).
_SURROGATE_ESCAPES = re.compile(
    r"(\\\\)"  # an escaped backslash: what follows is not an escape
    r"|(\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"  # a surrogate pair
    r"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"  # a lone surrogate
)


def _replace_lone_surrogate(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1) or match.group(2) else "\\ufffd"


def _reject_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def parse_json(raw: bytes) -> Any:
    """Parse stored JSON as node-redis + ``JSON.parse`` would.

    orjson handles the common case. What it refuses but JavaScript accepts is
    made acceptable first: invalid UTF-8 is decoded with U+FFFD as node-redis
    does, and a lone surrogate escape becomes ``\ufffd``, which is what
    JavaScript's UTF-8 encoder later makes of that lone surrogate; orjson then
    reads it at any depth up to 1024 levels. Integers beyond 64 bits go through
    the standard library (as doubles, like ``JSON.parse``). Raises
    :class:`ValueError` when JavaScript would throw, and for any document
    nested past 1024 levels (which JavaScript reads; express-session apps
    never store one).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    text = _SURROGATE_ESCAPES.sub(_replace_lone_surrogate, raw.decode("utf-8", "replace"))
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit"):
            # Past orjson's 1024 levels the standard library's answer would
            # depend on how deep the caller's own stack is: refuse, always.
            msg = "JSON nested too deeply"
            raise ValueError(msg) from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_js_int)
    except RecursionError:
        # Past ~1000 levels of what only the standard library reads: refused, never a crash.
        msg = "JSON nested too deeply"
        raise ValueError(msg) from None


def _js_int(text: str) -> int | float:
    """Read an integer literal as JSON.parse does: a double once it has many digits."""
    return int(text) if len(text) <= 20 else float(text)  # noqa: PLR2004 - beyond 2**64 only the double matters


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
