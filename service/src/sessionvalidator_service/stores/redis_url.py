"""Redis store URLs: one server, a Sentinel-managed master, or a Redis Cluster.

Only parsing and validation live here (no connection is made), so the
configuration can check a URL before anything starts, TLS files included:
:func:`tls_context` builds the ``ssl.SSLContext`` of a ``rediss://`` URL.
"""

from __future__ import annotations

import inspect
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.exceptions
from redis.asyncio.connection import RedisSSLContext, SSLConnection, parse_url

__all__ = ["TopologyURL", "check_redis_url", "parse_topology_url", "split_tls_settings", "tls_context"]

_TOPOLOGY_SCHEMES: Mapping[str, tuple[Literal["sentinel", "cluster"], bool]] = {
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_DEFAULT_PORTS = {"sentinel": 26379, "cluster": 6379}
_SENTINEL_PARAMS = ("sentinel_username", "sentinel_password")
_TLS_PARAMS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_PORT = re.compile(r"[0-9]{1,5}")
_DB = re.compile(r"[0-9]{1,4}")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


@dataclass(frozen=True, slots=True)
class TopologyURL:
    """A ``redis[s]+sentinel://`` or ``redis[s]+cluster://`` URL, parsed."""

    kind: Literal["sentinel", "cluster"]
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service_name: str = ""  # Sentinel: the monitored master's name
    db: int = 0  # Sentinel only: Redis Cluster has database 0 alone
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: Mapping[str, str | bool] = field(default_factory=dict)


def parse_topology_url(url: str) -> TopologyURL | None:
    """Parse a Sentinel or Cluster URL; return ``None`` for any other scheme.

    ``redis[s]+sentinel://[user[:password]@]host[:port][,host[:port]...]/<service_name>[/<db>][?params]``
    (port 26379 by default) and
    ``redis[s]+cluster://[user[:password]@]host[:port][,host[:port]...][/][?params]``
    (port 6379 by default; any node of the cluster will do, more for safety).
    The credentials are the Redis servers'; sentinels take
    ``sentinel_username`` / ``sentinel_password`` parameters. ``rediss+``
    uses TLS everywhere, tuned by ``ssl_ca_certs``, ``ssl_cert_reqs``
    (``none``, ``optional``, ``required``), ``ssl_certfile``, ``ssl_keyfile``
    and ``ssl_check_hostname``. Percent-encode reserved characters.

    Raises :class:`ValueError` naming the mistake (never echoing a password).
    """
    parts = urlsplit(url)
    scheme = _TOPOLOGY_SCHEMES.get(parts.scheme)
    if scheme is None:
        return None
    kind, tls = scheme
    form = f"{parts.scheme}://" + (
        "host:26379[,host:26379...]/<service_name>[/<db>]" if kind == "sentinel" else "host:6379[,host:6379...]"
    )
    if parts.fragment:
        raise ValueError("unexpected '#': percent-encode it as %23 (in a password, say)")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    if not hostlist:
        raise ValueError(f"no hosts: expected {form}")
    hosts = tuple(_host_port(entry, _DEFAULT_PORTS[kind]) for entry in hostlist.split(","))
    username, _, password = userinfo.partition(":")
    service_name, db = "", 0
    if kind == "sentinel":
        name, _, db_text = parts.path.removeprefix("/").partition("/")
        service_name = unquote(name)
        if not service_name:
            raise ValueError(f"no Sentinel service name (the monitored master's name): expected {form}")
        if db_text and not _DB.fullmatch(db_text):
            raise ValueError(f"the database after the service name must be a number, got {db_text!r}")
        db = int(db_text or "0")
    elif parts.path not in {"", "/", "/0"}:
        raise ValueError(f"Redis Cluster has database 0 only: nothing may follow the hosts, got {parts.path!r}")
    params = _params(parts.query, kind, tls)
    sentinel_params = {name: str(params.pop(name)) for name in _SENTINEL_PARAMS if name in params}
    return TopologyURL(
        kind=kind,
        tls=tls,
        hosts=hosts,
        username=unquote(username) or None,
        password=unquote(password) or None,
        service_name=service_name,
        db=db,
        sentinel_username=sentinel_params.get("sentinel_username") or None,
        sentinel_password=sentinel_params.get("sentinel_password") or None,
        tls_options=params,
    )


def _host_port(entry: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad host {entry!r}: write IPv6 addresses as [address]:port")
        has_port, port = bool(rest), rest[1:]
    elif entry.count(":") > 1:
        raise ValueError(f"bad host {entry!r}: write IPv6 addresses as [address]:port")
    else:
        host, colon, port = entry.partition(":")
        has_port = bool(colon)
    if not host:
        raise ValueError("an empty host in the list: write host:port,host:port")
    if not has_port:
        return host, default_port
    if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:  # noqa: PLR2004
        raise ValueError(f"bad port in {entry!r}: expected 1 to 65535")
    return host, int(port)


def _params(query: str, kind: str, tls: bool) -> dict[str, str | bool]:
    allowed = (_SENTINEL_PARAMS if kind == "sentinel" else ()) + (_TLS_PARAMS if tls else ())
    params: dict[str, str | bool] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in params:
            raise ValueError(f"query parameter {name!r} given twice")
        if name not in allowed:
            hint = "TLS parameters need rediss+" + kind if name in _TLS_PARAMS else "unknown query parameter"
            accepted = ", ".join(allowed) or "none"
            raise ValueError(f"{hint}: {name!r} (this URL accepts: {accepted})")
        if name == "ssl_check_hostname":
            if value.lower() not in _BOOLEANS:
                raise ValueError(f"ssl_check_hostname must be true or false, got {value!r}")
            params[name] = _BOOLEANS[value.lower()]
        elif name == "ssl_cert_reqs" and value not in {"none", "optional", "required"}:
            raise ValueError(f"ssl_cert_reqs must be none, optional or required, got {value!r}")
        else:
            params[name] = value
    return params


# Every ssl_* setting of redis-py's SSLConnection (what a rediss:// URL may
# carry), with its default there: certificates verified, host name checked.
_REDIS_PY_TLS_DEFAULTS: Mapping[str, Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(SSLConnection.__init__).parameters.items()
    if name.startswith("ssl_")
}


def split_tls_settings(options: dict[str, Any]) -> dict[str, Any]:
    """Move the ``ssl_*`` settings out of ``options`` (as ``redis.asyncio.connection.parse_url`` returns them).

    Raises :class:`ValueError` for a name redis-py's SSLConnection does not
    take, and for TLS settings on a URL that is not ``rediss://``: a setting
    is refused at startup, never ignored.
    """
    settings = {name: options.pop(name) for name in [name for name in options if name.startswith("ssl_")]}
    unknown = sorted(set(settings) - set(_REDIS_PY_TLS_DEFAULTS))
    if unknown:
        accepted = ", ".join(_REDIS_PY_TLS_DEFAULTS)
        raise ValueError(f"unknown TLS parameter {unknown[0]!r} (rediss:// accepts: {accepted})")
    if settings and options.get("connection_class") is not SSLConnection:
        raise ValueError(f"TLS parameters need rediss://: {next(iter(settings))!r}")
    return settings


def tls_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """Return the ``ssl.SSLContext`` redis-py would use for these ``ssl_*`` settings.

    Built by redis-py's own ``RedisSSLContext`` with ``SSLConnection``'s
    defaults, so ``rediss://`` means the same on the pipelined connection as
    on redis-py's pool: the system's CAs plus ``ssl_ca_certs`` /
    ``ssl_ca_path`` / ``ssl_ca_data``, ``ssl_cert_reqs=required`` and
    ``ssl_check_hostname=true`` unless the URL says otherwise (no host name
    check under ``ssl_cert_reqs=none``), a client certificate from
    ``ssl_certfile`` / ``ssl_keyfile`` (``ssl_password`` for an encrypted
    key). Raises :class:`ValueError` naming the file or value that does not
    load (never echoing ``ssl_password``).
    """
    merged = {**_REDIS_PY_TLS_DEFAULTS, **settings}
    try:
        return RedisSSLContext(**{name.removeprefix("ssl_"): value for name, value in merged.items()}).get()
    except (OSError, ssl.SSLError, redis.exceptions.RedisError, TypeError, ValueError) as exc:
        files = ", ".join(
            f"{name}={settings[name]}"
            for name in ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
            if name in settings
        )
        raise ValueError(f"the TLS settings do not load ({files or 'no files given'}): {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def check_redis_url(url: str) -> None:
    """Raise :class:`ValueError` naming what is wrong with a Redis URL of any form (TLS files are loaded)."""
    if parse_topology_url(url) is not None:
        return
    options: dict[str, Any] = dict(parse_url(url))
    settings = split_tls_settings(options)
    if options.get("connection_class") is SSLConnection:
        tls_context(settings)
