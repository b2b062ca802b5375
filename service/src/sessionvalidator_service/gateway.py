"""What a gateway is told: the decision table shared by Envoy ext_authz and HTTP forward-auth.

Both gateway front ends (:mod:`.ext_authz` over gRPC, :mod:`.http_auth` over
HTTP) turn a validator :class:`~.validator.Outcome` or a
:class:`~.errors.Failure` into one :class:`Decision`, here, so they cannot
disagree. A denial is what the client middlewares answer
(``tests/vectors/client_conformance.json``): JSON, ``cache-control: no-store``,
the same bodies, the verdict and reason only when the operator opts in
(``SESSIONVALIDATOR_GATEWAY_EXPOSE_VERDICT``):

| outcome | status | body | upstream gets |
|---|---|---|---|
| VALID, Passport user | 200 | — | the user headers, and the session token when configured (client copies removed) |
| VALID, no user (anonymous) | 401, or 200 if allowed | ``{"error":"unauthorized"}`` | no user headers |
| any other verdict | 401 | ``{"error":"unauthorized"}`` | — |
| store outage or timeout, overload | 503, ``retry-after`` (never 401) | ``{"error":"unavailable"}`` | — |
| too many bad cookies from one client | 429 with ``retry-after`` | ``{"error":"rate_limited"}`` | — |
| a bug | 500 | ``{"error":"internal"}`` | — |
| a Check body that is not a CheckRequest | 400 | ``{"error":"bad_request"}`` | — |

An allow names every header, empty where the user has no such field (no
email) or there is no user (an allowed anonymous session): Envoy is told to
remove those, and forward-auth sends them empty, because Caddy 2.6's
``copy_headers`` would otherwise set the literal placeholder text and keep
nothing from deleting a client's copy. A client's own header that an upstream
could read as one of ours (any case, ``_`` for ``-``: WSGI, CGI and PHP read
them alike) is an *identity lookalike*; where the protocol lets the service
remove headers (ext_authz), it removes every one the request carries. Header values carry
only visible ASCII: anything else (non-ASCII names, control characters, the
``%`` sign itself) is percent-encoded as UTF-8, so a stored user can never
split or forge a header. Roles are joined with ``,``
after each role is encoded the same way (a ``,`` inside a role is ``%2C``).
The session id never leaves: the upstream gets its 12-hex tag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import orjson

from sessionvalidator_service.domain import Reason, Verdict

if TYPE_CHECKING:  # types only: config imports this module, and healthcheck imports config
    from sessionvalidator_service.errors import Failure
    from sessionvalidator_service.tokens import TokenIssuer
    from sessionvalidator_service.validator import Outcome

__all__ = [
    "DEFAULT_HEADER_PREFIX",
    "Decision",
    "GatewayPolicy",
    "HeaderNames",
    "decide",
    "failed",
    "header_value",
    "join_cookie_headers",
]

DEFAULT_HEADER_PREFIX = "x-session-"
# Visible ASCII and space, except '%' (the escape) and ',' (the roles separator).
_UNSAFE = re.compile(r"[^\x20-\x24\x26-\x2b\x2d-\x7e]")
_NO_STORE = ("cache-control", "no-store")
_JSON = ("content-type", "application/json")
# What a client is told to wait before retrying after an outage: the middlewares' value.
_OUTAGE_RETRY_AFTER_S = 1
# The middlewares' body for each status (tests/vectors/client_conformance.json).
_ERRORS = {400: "bad_request", 401: "unauthorized", 429: "rate_limited", 503: "unavailable"}

Kind = Literal["allow", "deny", "unavailable", "rate_limited", "error"]


def header_value(text: str) -> str:
    """``text`` made safe for an HTTP header value (see the module docstring)."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")), text)


@dataclass(frozen=True, slots=True)
class HeaderNames:
    """The request headers that carry the user to the upstream (lower case)."""

    user_id: str
    username: str
    email: str
    roles: str
    sid_tag: str
    token: str

    @classmethod
    def with_prefix(cls, prefix: str) -> HeaderNames:
        """``x-session-user-id``, ``-username``, ``-email``, ``-roles``, ``-sid-tag``, ``-token`` for ``x-session-``."""
        prefix = prefix.lower()
        return cls(*(prefix + name for name in ("user-id", "username", "email", "roles", "sid-tag", "token")))

    @property
    def all(self) -> tuple[str, ...]:
        """Every name, in a fixed order: what gateways strip from client requests."""
        return (self.user_id, self.username, self.email, self.roles, self.sid_tag, self.token)

    @property
    def prefix(self) -> str:
        """The prefix the names share (``x-session-``)."""
        return self.user_id.removesuffix("user-id")

    def lookalikes(self, sent: Iterable[str]) -> list[str]:
        """Return the names in ``sent`` that an upstream could read as one of ours.

        That is the prefix in any case, ``_`` read as ``-``. Each is returned as sent, once, in the order first sent.
        """
        prefix = self.prefix.replace("_", "-")
        return list(dict.fromkeys(name for name in sent if name.lower().replace("_", "-").startswith(prefix)))


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    """How gateway front ends answer (``SESSIONVALIDATOR_GATEWAY_*``)."""

    allow_anonymous: bool = False
    # Put the verdict and reason in denial bodies, as the middlewares' expose_verdict option does.
    expose_verdict: bool = False
    headers: HeaderNames = field(default_factory=lambda: HeaderNames.with_prefix(DEFAULT_HEADER_PREFIX))


@dataclass(frozen=True, slots=True)
class Decision:
    """One answer to a gateway: allow with headers for the upstream, or deny with a response."""

    kind: Kind
    status: int
    # allow: headers to set on the upstream request; otherwise: response headers for the client.
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    # The metric label: a verdict name, "anonymous", or an ErrorInfo reason.
    label: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the request goes on to the upstream."""
        return self.kind == "allow"


def _denied(reason: Reason, *, expose: bool, label: str) -> Decision:
    body: dict[str, str] = {"error": _ERRORS[401]}
    if expose:
        body |= {"verdict": f"VERDICT_{reason.verdict.value}", "reason": f"REASON_{reason.name}"}
    return Decision("deny", 401, (_NO_STORE, _JSON), orjson.dumps(body), label)


# Every denial, by its reason and whether the verdict is exposed; a VALID reason is an anonymous session's.
_DENIALS = {
    (reason, expose): _denied(
        reason, expose=expose, label="anonymous" if reason.verdict is Verdict.VALID else reason.verdict.value
    )
    for reason in Reason
    for expose in (False, True)
}


def decide(
    outcome: Outcome, policy: GatewayPolicy, tag: Callable[[str], str], tokens: TokenIssuer | None = None
) -> Decision:
    """Decide for a judged credential (``outcome.reason`` is set; ``tag`` hashes a session id).

    With ``tokens`` configured for the gateways (``SESSIONVALIDATOR_JWT_GATEWAY``), an allow for a
    Passport user carries the session token in ``<prefix>token``; otherwise that header is empty.
    """
    reason = outcome.reason
    assert reason is not None  # noqa: S101 - callers turn a refused credential into a failure first
    if reason.verdict is not Verdict.VALID:
        return _DENIALS[reason, policy.expose_verdict]
    names = policy.headers
    if outcome.user is None:
        if not policy.allow_anonymous:
            return _DENIALS[reason, policy.expose_verdict]
        return Decision("allow", 200, tuple((name, "") for name in names.all), b"", "anonymous")
    profile = outcome.profile
    user_id = profile.id if profile is not None else outcome.user.user_id
    fields = (
        (user_id, "", "", "")
        if profile is None
        else (profile.id, profile.username, profile.email, ",".join(header_value(role) for role in profile.roles))
    )
    session_id = outcome.credential.session_id or ""
    token = ""
    if tokens is not None and tokens.config.gateway and profile is not None:
        token = tokens.token(session_id, profile, outcome.expire_time, tag) or ""
    return Decision(
        "allow",
        200,
        (
            (names.user_id, header_value(fields[0])),
            (names.username, header_value(fields[1])),
            (names.email, header_value(fields[2])),
            (names.roles, fields[3]),
            (names.sid_tag, tag(session_id)),
            (names.token, token),
        ),
        b"",
        "VALID",
    )


def failed(failure: Failure, policy: GatewayPolicy) -> Decision:
    """Decide when nothing could be decided: 503, 429 or 500, never 401 and never 200."""
    status = failure.http_status
    headers: list[tuple[str, str]] = [_NO_STORE, _JSON]
    retry_after_s = failure.retry_after_s
    if retry_after_s is None and status == 503:  # noqa: PLR2004
        retry_after_s = _OUTAGE_RETRY_AFTER_S
    if retry_after_s is not None:
        headers.append(("retry-after", str(max(1, math.ceil(retry_after_s)))))
    kind: Kind = "unavailable" if status == 503 else "rate_limited" if status == 429 else "error"  # noqa: PLR2004
    body = {"error": _ERRORS.get(status, "internal")}
    if policy.expose_verdict:
        body["reason"] = failure.reason_name
    return Decision(kind, status, tuple(headers), orjson.dumps(body), failure.reason_name)


def join_cookie_headers(values: Sequence[bytes]) -> bytes:
    """Several Cookie headers as one, joined with ``; `` as HTTP/2 and Node do."""
    return values[0] if len(values) == 1 else b"; ".join(values)
