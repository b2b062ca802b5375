"""Write sessions exactly as express-session + connect-redis 9 + Passport do.

Used by ``sessionvalidator mint`` (development, demos, load tests) and by the
tests. The stored JSON is what ``JSON.stringify(req.session)`` produces; the
key TTL is connect-redis's ``Math.ceil((expires - now) / 1000)``.
"""

from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sessionvalidator_service.signature import Signer

__all__ = ["MintedSession", "encode_uri_component", "js_iso", "mint_session", "new_session_id"]

_NOT_FOUND = object()


def new_session_id() -> str:
    """express-session's default ``genid``: uid-safe(24), 32 base64url characters."""
    return base64.urlsafe_b64encode(os.urandom(24)).rstrip(b"=").decode("ascii")


def encode_uri_component(text: str) -> str:
    """JavaScript's ``encodeURIComponent`` (UTF-8, unreserved set ``A-Za-z0-9-_.!~*'()``)."""
    return quote(text, safe="-_.!~*'()")


def js_iso(moment: datetime) -> str:
    """``Date.prototype.toJSON``: UTC, millisecond precision, ``Z`` suffix."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class MintedSession:
    """A session ready to store, and the cookie that names it."""

    session_id: str
    stored_json: str
    ttl_s: int | None
    cookie_value: str  # as sent on the wire: encodeURIComponent('s:' + signed)

    def cookie_header(self, cookie_name: str) -> str:
        """``<name>=<value>``, as a browser would send it back."""
        return f"{cookie_name}={self.cookie_value}"


def mint_session(
    signer: Signer,
    *,
    user: Any = _NOT_FOUND,
    max_age_s: float | None = 86400.0,
    session_id: str | None = None,
    now: datetime | None = None,
    extra: dict[str, Any] | None = None,
    disable_ttl: bool = False,
) -> MintedSession:
    """Build a session as express-session would store it.

    ``user`` is what Passport's ``serializeUser`` returned (omit it for an
    anonymous session). ``max_age_s=None`` is a browser-session cookie
    (``expires: null``), stored with connect-redis's default 86400 s TTL.
    """
    now = now or datetime.now(UTC)
    sid = session_id if session_id is not None else new_session_id()
    if max_age_s is None:
        cookie: dict[str, Any] = {"originalMaxAge": None, "expires": None, "httpOnly": True, "path": "/"}
        ttl: int | None = 86400
    else:
        max_age_ms = round(max_age_s * 1000)
        expires = now + timedelta(milliseconds=max_age_ms)
        cookie = {"originalMaxAge": max_age_ms, "expires": js_iso(expires), "httpOnly": True, "path": "/"}
        # connect-redis reads back the millisecond-rounded Date.
        expires_ms = datetime.fromisoformat(cookie["expires"]).timestamp() * 1000
        ttl = math.ceil((expires_ms - now.timestamp() * 1000) / 1000)
    session: dict[str, Any] = {"cookie": cookie}
    if extra:
        session.update(extra)
    if user is not _NOT_FOUND:
        session["passport"] = {"user": user}
    stored = json.dumps(session, separators=(",", ":"), ensure_ascii=False)
    return MintedSession(
        session_id=sid,
        stored_json=stored,
        ttl_s=None if disable_ttl else ttl,
        cookie_value=encode_uri_component("s:" + signer.sign(sid)),
    )
