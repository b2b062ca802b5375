"""Configuration from ``SESSIONVALIDATOR_*`` environment variables (each declared in :mod:`.variables`).

:meth:`Settings.from_env` is a pure function of the mapping it is given, so
tests pass plain dicts. A bad value raises :class:`ConfigError` naming the
variable; the command line prints it on one line and exits with status 2.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from sessionvalidator_service.gateway import GatewayPolicy, HeaderNames
from sessionvalidator_service.profile import AttributePolicy
from sessionvalidator_service.ratelimit import RateLimit
from sessionvalidator_service.serverkind import AUTO, KINDS
from sessionvalidator_service.stores import StoreOptions, check_url
from sessionvalidator_service.tls import TlsFiles
from sessionvalidator_service.variables import PREFIX

if TYPE_CHECKING:  # tokens.py loads PyJWT and cryptography: only when tokens are configured
    from sessionvalidator_service.tokens import TokenConfig
from sessionvalidator_service.weak_secrets import weakness

__all__ = ["ConfigError", "HttpLimits", "Settings", "redact_url"]

DEFAULT_STORE_URL = "redis://127.0.0.1:6379/0"
DEFAULT_LISTEN = "[::]:50051"

# RFC 6265 token characters: what an Express cookie name can be.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PASSWORD_PARAM = re.compile(r"([?&](?:sentinel_|ssl_)?password=)[^&#]*")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_COLLECTION = re.compile(r"^[^$\x00]{1,120}$")


class ConfigError(ValueError):
    """A configuration value is missing or wrong."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{PREFIX}{variable}: {problem}")
        self.variable = PREFIX + variable


def redact_url(url: str) -> str:
    """Return ``url`` with any password (userinfo or query) replaced, for logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        url = urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))
    return _PASSWORD_PARAM.sub(r"\1***", url)


def _check_utf8(variable: str, secret: str) -> str:
    try:
        secret.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(variable, "secrets must be valid UTF-8") from None
    return secret


def _secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    inline = env.get(PREFIX + "SECRETS")
    path = env.get(PREFIX + "SECRETS_FILE")
    if inline and path:
        raise ConfigError(
            "SECRETS_FILE", "set either SESSIONVALIDATOR_SECRETS or SESSIONVALIDATOR_SECRETS_FILE, not both"
        )
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("SECRETS_FILE", f"cannot read {path!r}: {exc.__class__.__name__}") from None
        secrets = tuple(line.rstrip("\r") for line in text.split("\n") if line.rstrip("\r"))
        if not secrets:
            raise ConfigError("SECRETS_FILE", f"{path!r} holds no secret (one per line)")
        return secrets
    if not inline:
        raise ConfigError("SECRETS", "required: the express-session secret, or a JSON array of secrets")
    if inline.lstrip().startswith("["):
        try:
            parsed = json.loads(inline)
        except ValueError:
            raise ConfigError("SECRETS", "looks like a JSON array but does not parse") from None
        if not isinstance(parsed, list) or not parsed or not all(isinstance(s, str) and s for s in parsed):
            raise ConfigError("SECRETS", "a JSON array must hold one or more non-empty strings")
        return tuple(_check_utf8("SECRETS", s) for s in parsed)
    return (_check_utf8("SECRETS", inline),)


def _truthy(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    raw = (env.get(PREFIX + name) or "").strip().lower()
    if raw == "":
        return default
    if raw in {"0", "false", "no", "off"}:
        return False
    if raw in {"1", "true", "yes", "on"}:
        return True
    raise ConfigError(name, f"must be true or false, got {raw!r}")


def _refuse_weak(env: Mapping[str, str], secrets: tuple[str, ...]) -> None:
    """Refuse secrets an attacker can guess, unless explicitly allowed."""
    if _truthy(env, "ALLOW_WEAK_SECRETS"):
        return
    variable = "SECRETS_FILE" if env.get(PREFIX + "SECRETS_FILE") else "SECRETS"
    for position, secret in enumerate(secrets, start=1):
        problem = weakness(secret)
        if problem is not None:
            raise ConfigError(
                variable,
                f"secret #{position} {problem}: anyone who guesses it can forge sessions. Use a long random "
                f"secret (e.g. 48 random bytes, base64) in the Express app and here, or set "
                f"{PREFIX}ALLOW_WEAK_SECRETS=1 to accept it anyway (tests and demos only)",
            )


def _store_url(env: Mapping[str, str]) -> str:
    url = env.get(PREFIX + "STORE_URL") or None
    alias = env.get(PREFIX + "REDIS_URL") or None
    if url is not None and alias is not None:
        raise ConfigError(
            "REDIS_URL", "set either SESSIONVALIDATOR_STORE_URL or its older alias SESSIONVALIDATOR_REDIS_URL, not both"
        )
    name = "REDIS_URL" if alias is not None else "STORE_URL"
    url = url or alias or DEFAULT_STORE_URL
    try:
        check_url(url)
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None
    return url


def _collection(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    value = env.get(PREFIX + name) or default
    if value is not None and (not _COLLECTION.match(value) or value.startswith("system.")):
        raise ConfigError(name, f"not a MongoDB collection name: {value!r}")
    return value


def _attribute_policy(env: Mapping[str, str]) -> AttributePolicy:
    raw = env.get(PREFIX + "PROFILE_ATTRIBUTES")
    if raw is None or raw.strip() == "*":
        return AttributePolicy()
    if raw.strip().lower() in {"", "none"}:
        return AttributePolicy(frozenset())
    keys = frozenset(part.strip() for part in raw.split(",") if part.strip())
    return AttributePolicy(keys)


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = (env.get(PREFIX + name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(name, f"must be a whole number from {low} to {high}, got {raw!r}")
    return int(raw)


def _listen(env: Mapping[str, str], name: str = "LISTEN", default: str | None = DEFAULT_LISTEN) -> str | None:
    listen = env.get(PREFIX + name) or default
    if listen is None:
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:  # noqa: PLR2004
        raise ConfigError(name, f"must be host:port (such as [::]:50051 or 127.0.0.1:0), got {listen!r}")
    return listen


DEFAULT_RATE_LIMIT = RateLimit(100.0, 1000)
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m)\s*$")
_METADATA_KEY = re.compile(r"^[0-9a-z_.-]+$")


def _rate_limit(env: Mapping[str, str]) -> RateLimit | None:
    raw = (env.get(PREFIX + "RATE_LIMIT") or "100/s").strip().lower()
    if raw == "off":
        return None
    match = _RATE.match(raw)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError("RATE_LIMIT", f"must be off or a rate such as 100/s or 600/m, got {raw!r}")
    per_second = float(match.group(1)) / (60.0 if match.group(2) == "m" else 1.0)
    burst_raw = env.get(PREFIX + "RATE_LIMIT_BURST") or str(max(1, round(per_second * 10)))
    if not burst_raw.isdigit() or int(burst_raw) < 1:
        raise ConfigError("RATE_LIMIT_BURST", f"must be a whole number of attempts >= 1, got {burst_raw!r}")
    return RateLimit(per_second, int(burst_raw))


def _peer_header(env: Mapping[str, str]) -> str | None:
    raw = env.get(PREFIX + "RATE_LIMIT_PEER_HEADER")
    if not raw:
        return None
    key = raw.strip().lower()
    if not _METADATA_KEY.match(key) or key.startswith("grpc-") or key.endswith("-bin"):
        raise ConfigError("RATE_LIMIT_PEER_HEADER", f"must be a gRPC metadata key such as x-client-ip, got {raw!r}")
    return key


def _tls(env: Mapping[str, str]) -> TlsFiles | None:
    cert = env.get(PREFIX + "TLS_CERT_FILE") or None
    key = env.get(PREFIX + "TLS_KEY_FILE") or None
    client_ca = env.get(PREFIX + "TLS_CLIENT_CA_FILE") or None
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError(
                "TLS_CLIENT_CA_FILE", "mutual TLS needs SESSIONVALIDATOR_TLS_CERT_FILE and _TLS_KEY_FILE too"
            )
        return None
    if cert is None or key is None:
        missing = "TLS_CERT_FILE" if cert is None else "TLS_KEY_FILE"
        raise ConfigError(missing, "TLS needs both SESSIONVALIDATOR_TLS_CERT_FILE and SESSIONVALIDATOR_TLS_KEY_FILE")
    files = TlsFiles(cert, key, client_ca)
    for name, path in (("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key), ("TLS_CLIENT_CA_FILE", client_ca)):
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(name, f"cannot read {path!r}")
    return files


def _server(env: Mapping[str, str]) -> str:
    name = (env.get(PREFIX + "SERVER") or "grpcio").strip().lower()
    if name == AUTO:
        return name  # resolved at start (serverkind.resolve): native unless TLS or not installed
    if name not in KINDS:
        raise ConfigError("SERVER", f"must be {', '.join(KINDS)} or {AUTO}, got {name!r}")
    kind = KINDS[name]
    if not kind.tls and env.get(PREFIX + "TLS_CERT_FILE"):
        raise ConfigError("SERVER", f"the {name} server has no TLS: use grpcio with SESSIONVALIDATOR_TLS_*")
    if not kind.available():
        raise ConfigError("SERVER", f"{name} is not installed ({kind.install_hint})")
    return name


def _workers(env: Mapping[str, str]) -> int:
    raw = env.get(PREFIX + "WORKERS") or "1"
    if raw == "auto":
        return max(1, os.cpu_count() or 1)
    if not raw.isdigit() or not 1 <= int(raw) <= 64:  # noqa: PLR2004
        raise ConfigError("WORKERS", f"must be a number of processes from 1 to 64, or auto, got {raw!r}")
    return int(raw)


def _positive(env: Mapping[str, str], name: str, default: float, unit: str) -> float:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of {unit}, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(name, f"must be a positive number of {unit}, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What clients may hold of the forward-auth port.

    ``SESSIONVALIDATOR_HTTP_MAX_CONNECTIONS`` and ``SESSIONVALIDATOR_HTTP_HEADER_TIMEOUT_S``.
    """

    max_connections: int = 1024
    header_timeout_s: float = 10.0


_HEADER_PREFIX = re.compile(r"^[0-9a-z!#$%&'*+.^_`|~-]{1,64}$")


def _gateway(env: Mapping[str, str]) -> GatewayPolicy:
    """``SESSIONVALIDATOR_GATEWAY_ANONYMOUS``, ``_EXPOSE_VERDICT`` and ``_HEADER_PREFIX`` (ext_authz, forward-auth)."""
    anonymous = (env.get(PREFIX + "GATEWAY_ANONYMOUS") or "deny").strip().lower()
    if anonymous not in {"deny", "allow"}:
        raise ConfigError("GATEWAY_ANONYMOUS", f"must be deny or allow, got {anonymous!r}")
    prefix = (env.get(PREFIX + "GATEWAY_HEADER_PREFIX") or "x-session-").strip().lower()
    if not _HEADER_PREFIX.match(prefix) or prefix.startswith(":"):
        raise ConfigError("GATEWAY_HEADER_PREFIX", f"must be a header name prefix such as x-session-, got {prefix!r}")
    return GatewayPolicy(
        allow_anonymous=anonymous == "allow",
        expose_verdict=_truthy(env, "GATEWAY_EXPOSE_VERDICT"),
        headers=HeaderNames.with_prefix(prefix),
    )


def _tokens(env: Mapping[str, str], attributes: AttributePolicy) -> TokenConfig | None:
    """``SESSIONVALIDATOR_JWT_*``: off unless a signing key file is named; the files must load."""
    from sessionvalidator_service.tokens import DEFAULT_LIFETIME_S, TokenConfig, TokenError, load_keys

    key_file = env.get(PREFIX + "JWT_KEY_FILE") or None
    retired = tuple(p.strip() for p in (env.get(PREFIX + "JWT_RETIRED_KEY_FILES") or "").split(",") if p.strip())
    if key_file is None:
        for name in ("JWT_RETIRED_KEY_FILES", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_LIFETIME_S", "JWT_GATEWAY"):
            if env.get(PREFIX + name):
                raise ConfigError(name, "tokens need a signing key: set SESSIONVALIDATOR_JWT_KEY_FILE too")
        return None
    issuer = (env.get(PREFIX + "JWT_ISSUER") or "").strip()
    audience = (env.get(PREFIX + "JWT_AUDIENCE") or "").strip()
    for name, value in (("JWT_ISSUER", issuer), ("JWT_AUDIENCE", audience)):
        if not value:
            raise ConfigError(name, "required with SESSIONVALIDATOR_JWT_KEY_FILE (verifiers check it)")
    config = TokenConfig(
        key_file=key_file,
        issuer=issuer,
        audience=audience,
        retired_key_files=retired,
        lifetime_s=_whole(env, "JWT_LIFETIME_S", DEFAULT_LIFETIME_S, 10, 86_400),
        gateway=_truthy(env, "JWT_GATEWAY"),
        attributes=bool(attributes.allow),
    )
    try:
        load_keys(config)
    except TokenError as exc:
        raise ConfigError("JWT_KEY_FILE", str(exc)) from None
    return config


@dataclass(frozen=True, slots=True)
class Settings:
    """The service's whole configuration, validated."""

    secrets: tuple[str, ...] = field(repr=False)
    store_url: str = DEFAULT_STORE_URL
    cookie_name: str = "connect.sid"
    key_prefix: str = "sess:"
    listen: str = DEFAULT_LISTEN
    user_key: str | None = None
    mongo_collection: str = "sessions"
    mongo_users_collection: str | None = None
    store_timeout_s: float = 0.1
    max_session_bytes: int = 1024 * 1024
    shutdown_grace_s: float = 10.0
    # The first part of the grace at SIGTERM: NOT_SERVING, new calls still served (load balancers move away).
    shutdown_delay_s: float = 3.0
    log_level: int = logging.INFO
    workers: int = 1
    metrics_listen: str | None = None
    rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT
    rate_limit_peer_header: str | None = None
    tls: TlsFiles | None = None
    coalesce: bool = True
    server: str = "grpcio"
    attribute_policy: AttributePolicy = field(default_factory=AttributePolicy)
    # Calls in progress at once before new ones are refused (OVERLOADED); 0: no bound.
    max_in_flight: int = 4096
    # HTTP forward-auth (http_auth.py); None: off.
    http_listen: str | None = None
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    gateway: GatewayPolicy = field(default_factory=GatewayPolicy)
    # HTTP/2 streams one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS); 0: grpc's default (no limit).
    max_concurrent_streams: int = 256
    # Sessions kept in memory while Redis reports every change to them (client-side tracking); 0: off.
    session_cache: int = 10_000
    # Session tokens (tokens.py); None: off.
    tokens: TokenConfig | None = None

    def __repr__(self) -> str:
        # Every field, derived so it cannot drift; never a secret or a password.
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "secrets":
                shown.append(f"secrets=<{len(value)} hidden>")
            elif item.name == "store_url":
                shown.append(f"store_url={redact_url(value)!r}")
            elif item.name == "log_level":
                shown.append(f"log_level={logging.getLevelName(value)}")
            else:
                shown.append(f"{item.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def store_options(self) -> StoreOptions:
        """What the store is built with."""
        return StoreOptions(
            timeout_s=self.store_timeout_s,
            key_prefix=self.key_prefix,
            user_key=self.user_key,
            mongo_collection=self.mongo_collection,
            mongo_users_collection=self.mongo_users_collection,
            max_session_bytes=self.max_session_bytes,
            session_cache=self.session_cache,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, require_secrets: bool = True) -> Settings:
        """Read and validate every ``SESSIONVALIDATOR_*`` variable in ``env``."""
        cookie_name = env.get(PREFIX + "COOKIE_NAME") or "connect.sid"
        if not _TOKEN.match(cookie_name):
            raise ConfigError("COOKIE_NAME", f"not a valid cookie name: {cookie_name!r}")
        user_key = env.get(PREFIX + "USER_KEY") or None
        if user_key is not None and "{id}" not in user_key:
            raise ConfigError("USER_KEY", f"must contain {{id}}, such as user:{{id}}, got {user_key!r}")
        level_name = (env.get(PREFIX + "LOG_LEVEL") or "INFO").upper()
        if level_name not in _LEVELS:
            raise ConfigError("LOG_LEVEL", f"must be one of {', '.join(_LEVELS)}, got {level_name!r}")
        secrets = (
            _secrets(env) if require_secrets or env.get(PREFIX + "SECRETS") or env.get(PREFIX + "SECRETS_FILE") else ()
        )
        _refuse_weak(env, secrets)
        listen = _listen(env) or DEFAULT_LISTEN
        workers = _workers(env)
        if workers > 1 and listen.rpartition(":")[2] == "0":
            raise ConfigError("WORKERS", "several workers share one port: set SESSIONVALIDATOR_LISTEN to a fixed port")
        http_listen = _listen(env, "HTTP_LISTEN", default=None)
        attribute_policy = _attribute_policy(env)
        if workers > 1 and http_listen is not None and http_listen.rpartition(":")[2] == "0":
            raise ConfigError("HTTP_LISTEN", "several workers share one port: set a fixed port")
        return cls(
            secrets=secrets,
            store_url=_store_url(env),
            mongo_collection=_collection(env, "MONGO_COLLECTION", "sessions") or "sessions",
            mongo_users_collection=_collection(env, "MONGO_USERS_COLLECTION", None),
            max_session_bytes=_whole(env, "MAX_SESSION_BYTES", 1024 * 1024, 1024, 512 * 1024 * 1024),
            max_in_flight=_whole(env, "MAX_IN_FLIGHT", 4096, 0, 1_000_000),
            max_concurrent_streams=_whole(env, "MAX_CONCURRENT_STREAMS", 256, 0, 65_535),
            session_cache=_whole(env, "SESSION_CACHE", 10_000, 0, 10_000_000),
            attribute_policy=attribute_policy,
            cookie_name=cookie_name,
            key_prefix=env.get(PREFIX + "KEY_PREFIX", "sess:"),
            listen=listen,
            user_key=user_key,
            store_timeout_s=_positive(env, "STORE_TIMEOUT_MS", 100.0, "milliseconds") / 1000.0,
            shutdown_grace_s=_positive(env, "SHUTDOWN_GRACE_S", 10.0, "seconds"),
            shutdown_delay_s=_whole(env, "SHUTDOWN_DELAY_MS", 3000, 0, 600_000) / 1000.0,
            log_level=logging.getLevelNamesMapping()[level_name],
            workers=workers,
            metrics_listen=_listen(env, "METRICS_LISTEN", default=None),
            http_limits=HttpLimits(
                max_connections=_whole(env, "HTTP_MAX_CONNECTIONS", 1024, 1, 1_000_000),
                header_timeout_s=_positive(env, "HTTP_HEADER_TIMEOUT_S", 10.0, "seconds"),
            ),
            rate_limit=_rate_limit(env),
            rate_limit_peer_header=_peer_header(env),
            tls=_tls(env),
            coalesce=_truthy(env, "COALESCE", default=True),
            server=_server(env),
            http_listen=http_listen,
            gateway=_gateway(env),
            tokens=_tokens(env, attribute_policy),
        )
