"""What the atheris targets share: where things are, and how known bugs are told from new ones.

A target calls :func:`tolerate` in its ``except`` clause. An exception that
:func:`tests.fuzz.oracles.known_bug` recognises as an open bug
(``oracles.OPEN_BUGS``, empty while every found bug is fixed) is counted and
the input let through, so a long run keeps searching for new bugs instead of
stopping at the first input of a known one; anything else is re-raised and
libFuzzer saves the input as a crash. ``SV_FUZZ_STRICT=1``
(``run.py --strict``) re-raises open bugs too.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

from tests.fuzz.oracles import FOUND_BUGS, known_bug

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
DICTS = HERE / "dicts"
TARGETS = ("cookie", "stored", "profile")

STRICT = os.environ.get("SV_FUZZ_STRICT") == "1"

# The servicer logs every corrupt session at ERROR: at thousands of inputs a
# second that is all the log would hold, and most of the time spent.
logging.disable(logging.CRITICAL)
_seen: Counter[str] = Counter()


NEST = 0xFF
_WRAPPERS = ((b"[", b"]"), (b'{"a":', b"}"), (b'{"a":[', b"]}"))


def expand(data: bytes) -> bytes:
    """Give the JSON targets a cheap way to nest deeply, which byte mutations alone rarely reach.

    An input starting with 0xFF is ``0xFF, depth (2 bytes, big-endian, mod 4096), wrapper, payload``:
    the payload wrapped ``depth`` times in ``[...]``, ``{"a":...}`` or ``{"a":[...]}`` (wrapper mod 3).
    Any other input is used as it is.
    """
    if len(data) < 4 or data[0] != NEST:  # the 4-byte header
        return data
    depth = int.from_bytes(data[1:3], "big") % 4096
    opening, closing = _WRAPPERS[data[3] % len(_WRAPPERS)]
    return opening * depth + data[4:] + closing * depth


def tolerate(
    exc: BaseException,
    *,
    data: bytes | str | list[bytes | str] = b"",
    pttl_ms: int = 0,
    expires: datetime | None = None,
    depth: int | None = None,
) -> None:
    """Return if ``exc`` is a known bug for this input (and not strict); raise it otherwise."""
    bugs = known_bug(exc, data=data, pttl_ms=pttl_ms, expires=expires, depth=depth)
    if not bugs or STRICT:
        raise exc
    for bug in bugs:
        _seen[bug] += 1
    if _seen[bugs[0]] == 1:
        print(f"\nknown bug ({type(exc).__name__}), tolerated (run.py --strict stops on it):", file=sys.stderr)
        for bug in bugs:
            print(f"  {bug}: {FOUND_BUGS[bug]}", file=sys.stderr)
