"""Every ``SESSIONVALIDATOR_*`` variable, declared once: its name, its default as a reader sees it, what it means.

The README's configuration table is generated from :data:`VARIABLES` (``make config-table`` rewrites it between
its markers; ``tests/unit/test_variables.py`` fails when the two differ, when code reads a variable this table
does not declare or declares one nothing reads, or when a default the table shows is not the one
:meth:`.config.Settings.from_env` applies). A row may name several variables that are set together (a certificate
and its key).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PREFIX", "VARIABLES", "Variable", "markdown_table"]

PREFIX = "SESSIONVALIDATOR_"


@dataclass(frozen=True, slots=True)
class Variable:
    """One row of the configuration table: names without :data:`PREFIX`, the default as shown, the meaning."""

    names: tuple[str, ...]
    default: str
    doc: str

    def markdown(self) -> str:
        """Return the README row: the first name whole, any others as ``_NAME``."""
        shown = " / ".join([f"`{PREFIX}{self.names[0]}`", *(f"`_{name}`" for name in self.names[1:])])
        return f"| {shown} | {self.default} | {self.doc} |"


VARIABLES: tuple[Variable, ...] = (
    Variable(
        ("SECRETS",),
        "— (required, or `_SECRETS_FILE`)",
        'the express-session secret, or a JSON array of secrets, current first (`\'["new","old"]\'`)',
    ),
    Variable(
        ("SECRETS_FILE",),
        "—",
        "a file with one secret per line, current first (blank lines ignored); exclusive with `_SECRETS`",
    ),
    Variable(
        ("ALLOW_WEAK_SECRETS",),
        "`false`",
        (
            "start even with a weak secret: shorter than 32 bytes, fewer than 8 distinct characters, or a "
            "published sample such as express-session's `keyboard cat`. Without it such a secret stops "
            "start-up, naming the secret's position and why (tests and demos only)"
        ),
    ),
    Variable(
        ("STORE_URL",),
        "`redis://127.0.0.1:6379/0`",
        (
            "the session store. connect-redis: one server as `redis://`, `rediss://` (TLS, e.g. "
            "`rediss://:pw@cache.example:6380/0?ssl_ca_certs=/etc/ssl/redis-ca.pem`, see [TLS](#tls-rediss)) "
            "or `unix:///path?db=N`; a Sentinel-managed master as "
            "`redis+sentinel://host:26379[,host:26379…]/<service_name>[/<db>]`; a Redis Cluster as "
            "`redis+cluster://host:6379[,host:6379…]` (`rediss+…` for TLS), see [Redis "
            "topologies](#redis-topologies). connect-mongo: `mongodb://` or `mongodb+srv://`, see *Session "
            "stores*. Credentials in the URL are never logged"
        ),
    ),
    Variable(
        ("REDIS_URL",),
        "—",
        ("the older name of `SESSIONVALIDATOR_STORE_URL`, still accepted; setting both is a configuration error"),
    ),
    Variable(
        ("MAX_SESSION_BYTES",),
        "`1048576` (1 MiB)",
        (
            "stored sessions larger than this are answered `SESSION_TOO_LARGE` without being transferred or "
            "parsed (1024 to 512 MiB)"
        ),
    ),
    Variable(
        ("PROFILE_ATTRIBUTES",),
        "— (every key but secret-named ones)",
        (
            "which top-level keys of the user record reach `UserProfile.attributes`: a comma list, or "
            "`none`. See *The contract*"
        ),
    ),
    Variable(
        ("COOKIE_NAME",),
        "`connect.sid`",
        "express-session's `name` option",
    ),
    Variable(
        ("KEY_PREFIX",),
        "`sess:`",
        "connect-redis's `prefix` option (may be empty)",
    ),
    Variable(
        ("LISTEN",),
        "`[::]:50051`",
        "gRPC listen address, `host:port` (port 0 picks a free port, logged at start)",
    ),
    Variable(
        ("MONGO_COLLECTION",),
        "`sessions`",
        (
            "MongoDB: connect-mongo's `collectionName` (the database is the URL's path); see [Session "
            "stores](#session-stores)"
        ),
    ),
    Variable(
        ("MONGO_USERS_COLLECTION",),
        "—",
        (
            "MongoDB: the collection where a scalar `passport.user` is looked up by `_id` (a 24-hex id also "
            "as an ObjectId). Unset: the profile holds the id alone"
        ),
    ),
    Variable(
        ("USER_KEY",),
        "—",
        (
            "key template for user records when `passport.user` is a scalar id, e.g. `user:{id}`; the record "
            "may be a JSON string or a hash. Unset: the profile holds the id alone"
        ),
    ),
    Variable(
        ("STORE_TIMEOUT_MS",),
        "`100`",
        (
            "hard limit on each store round trip (including connecting, or waiting for a pooled connection "
            "where one is used); a timeout while the server's own event loop ran late by half of it or more "
            "is reported as `OVERLOADED`, not `STORE_TIMEOUT`"
        ),
    ),
    Variable(
        ("MAX_IN_FLIGHT",),
        "`4096`",
        (
            "calls in progress at once; beyond it new calls are refused at once with "
            "`UNAVAILABLE`/`OVERLOADED` (retried with backoff by the clients); `0` disables the bound"
        ),
    ),
    Variable(
        ("MAX_CONCURRENT_STREAMS",),
        "`256`",
        (
            "HTTP/2 streams one connection may have open (advertised in SETTINGS; grpcio server). Beyond it "
            "a client's extra streams are refused (`UNAVAILABLE`), never `CANCELLED`; `0` leaves grpc's "
            "default (no limit)"
        ),
    ),
    Variable(
        ("SHUTDOWN_GRACE_S",),
        "`10`",
        "how long in-flight calls may run after SIGTERM",
    ),
    Variable(
        ("SHUTDOWN_DELAY_MS",),
        "`3000`",
        (
            "the first part of that grace (at most half of it): after SIGTERM, readiness is `NOT_SERVING` at once but "
            "new calls are still served this long, so load balancers and health-watching clients move away first; "
            "`0` drains at once. SIGINT does not wait"
        ),
    ),
    Variable(
        ("LOG_LEVEL",),
        "`INFO`",
        "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`",
    ),
    Variable(
        ("METRICS_LISTEN",),
        "— (off)",
        (
            "serve Prometheus metrics at `http://host:port/metrics`, e.g. `[::]:9464`; with several workers "
            "the supervisor serves them merged"
        ),
    ),
    Variable(
        ("RATE_LIMIT",),
        "`100/s`",
        (
            "bad attempts (bad signatures, malformed cookies) allowed per identity, `N/s` or `N/m`; `off` "
            "disables it. See *Rate limiting*"
        ),
    ),
    Variable(
        ("RATE_LIMIT_BURST",),
        "10 × the rate",
        "bad attempts an identity may make at once",
    ),
    Variable(
        ("RATE_LIMIT_PEER_HEADER",),
        "—",
        (
            "gRPC metadata key, or forward-auth request header, that a **trusted** gateway sets to the end "
            "client's address (`x-client-ip` in the nginx, Caddy and Envoy HTTP examples, `x-forwarded-for` "
            "for Traefik; the first entry of a comma list is used). Unset: the identity is the caller's own "
            "address"
        ),
    ),
    Variable(
        (
            "TLS_CERT_FILE",
            "TLS_KEY_FILE",
        ),
        "— (plaintext)",
        (
            "serve gRPC over TLS with this certificate chain and key (PEM). Re-read when the files change, "
            "without a restart"
        ),
    ),
    Variable(
        ("TLS_CLIENT_CA_FILE",),
        "—",
        "with TLS on: require client certificates signed by this CA (mutual TLS)",
    ),
    Variable(
        (
            "CHECK_TLS_CA",
            "CHECK_TLS_CERT",
            "CHECK_TLS_KEY",
            "CHECK_TLS_SERVER_NAME",
        ),
        "—",
        ("defaults for `check`/`healthcheck`'s `--tls-*` options (e.g. for the Docker HEALTHCHECK of a TLS service)"),
    ),
    Variable(
        ("SESSION_CACHE",),
        "`10000`",
        (
            "Redis (`redis://`, `rediss://`, `unix://`): sessions kept in memory while Redis reports every "
            "change to them, see [The session cache](#the-session-cache); `0` turns it off"
        ),
    ),
    Variable(
        ("COALESCE",),
        "`true`",
        (
            "gather the session lookups of concurrent calls made in the same event-loop pass into one store "
            "round trip (not used with Redis Cluster)"
        ),
    ),
    Variable(
        ("SERVER",),
        "`grpcio`",
        (
            "`grpcio`, `native` or `auto`. `native` serves the same services with "
            "[pygrpc-native](https://pypi.org/project/pygrpc-native/) (HTTP/2 in Rust, outside the GIL; no TLS: asking "
            "for it with `SESSIONVALIDATOR_TLS_*` is a start-up error); `auto` picks `native` unless TLS is configured "
            "or pygrpc-native is not installed. The `serving` log line (`server`, `server_reason`) and the "
            "`sessionvalidator_server_kind{kind,reason}` gauge say which serves and why; see "
            "[Server kinds](#server-kinds)"
        ),
    ),
    Variable(
        ("HTTP_LISTEN",),
        "— (off)",
        (
            "serve HTTP forward-auth (`/auth`, `/healthz`) on `host:port`, see [Gateways](#gateways); with "
            "several workers it needs a fixed port too"
        ),
    ),
    Variable(
        ("HTTP_MAX_CONNECTIONS",),
        "`1024`",
        (
            "connections the forward-auth port holds at once; past it a new one is answered 503 and closed "
            "(slow clients cost this port, never gRPC)"
        ),
    ),
    Variable(
        ("HTTP_HEADER_TIMEOUT_S",),
        "`10`",
        (
            "a forward-auth connection whose request head has not arrived this long after its first byte (or "
            "after connecting) is closed"
        ),
    ),
    Variable(
        ("GATEWAY_ANONYMOUS",),
        "`deny`",
        (
            "what gateways are told for a live session without a Passport user: `deny` (401) or `allow` "
            "(pass, with no user headers)"
        ),
    ),
    Variable(
        ("GATEWAY_EXPOSE_VERDICT",),
        "`false`",
        "put the verdict and reason in gateway denial bodies, as the middlewares' `expose_verdict` does",
    ),
    Variable(
        ("GATEWAY_HEADER_PREFIX",),
        "`x-session-`",
        (
            "prefix of the user headers gateways receive (`<prefix>user-id`, `username`, `email`, `roles`, "
            "`sid-tag`, `token`)"
        ),
    ),
    Variable(
        ("JWT_KEY_FILE",),
        "— (off)",
        (
            "turns [session tokens](#session-tokens) on: the PEM private key (Ed25519 → EdDSA, P-256 → "
            "ES256, RSA ≥ 2048 bits → RS256) that signs them, e.g. made by `sessionvalidator mint-key`. "
            "Re-read on SIGHUP"
        ),
    ),
    Variable(
        ("JWT_RETIRED_KEY_FILES",),
        "—",
        (
            "comma-separated key files (private or public PEM) no longer signing whose tokens may still be "
            "live: published in the JWKS, never used to sign. Re-read on SIGHUP"
        ),
    ),
    Variable(
        ("JWT_ISSUER",),
        "— (required with a key)",
        "the tokens' `iss`",
    ),
    Variable(
        ("JWT_AUDIENCE",),
        "— (required with a key)",
        "the tokens' `aud`",
    ),
    Variable(
        ("JWT_LIFETIME_S",),
        "`300`",
        (
            "a token's lifetime, 10–86400 s; `exp` is also never later than the session's own expiry. The "
            "JWKS's `Cache-Control: max-age` is the same"
        ),
    ),
    Variable(
        ("JWT_GATEWAY",),
        "`false`",
        ("put a token in `<prefix>token` on every gateway allow for a Passport user (ext_authz and forward-auth)"),
    ),
    Variable(
        ("WORKERS",),
        "`1`",
        (
            "server processes sharing the port (SO_REUSEPORT), 1–64 or `auto` (one per CPU). A Python "
            "process uses about one core; on a VM give one worker per core, on Kubernetes prefer more pods. "
            "Needs a fixed port. If a worker dies, all stop (exit 1) so the orchestrator restarts a whole "
            "unit. The kernel balances connections, not calls: clients should open several connections or "
            "balance over replicas"
        ),
    ),
)


def markdown_table() -> str:
    """Return the README's configuration table, header included."""
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *(v.markdown() for v in VARIABLES)])
