"""Channel defaults: target, options (keepalive, balancing, retries) and credentials.

Both clients build their channels from here, so the sync and the async client
behave the same on the wire.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import grpc

__all__ = [
    "DEFAULT_TIMEOUT",
    "SERVICE_CONFIG",
    "ChannelOption",
    "authority_for",
    "channel_credentials",
    "channel_options",
    "check_target",
    "check_timeout",
    "normalize_target",
]

ChannelOption = tuple[str, Any]

SERVICE_NAME = "sessionvalidator.v1.SessionValidator"

# Per-call deadline in seconds. Well under Envoy ext_authz's 200 ms default, so a
# caller behind Envoy gets our error (and can answer 503) before Envoy gives up.
DEFAULT_TIMEOUT = 0.15

# Spread calls over every address the name resolves to, and retry UNAVAILABLE
# (the store or a validator replica could not answer) twice, quickly, as well as
# a CANCELLED the server sent (grpcio's server cancels the calls it has received
# but not started when a replica stops; they are reads, safe to retry). Retries
# happen inside the call's deadline; they never extend it.
# retryThrottling stops retrying altogether when most calls fail, so an outage
# does not triple the load on the validators. The same config is in every
# client (tests/vectors/client_conformance.json).
SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
    "methodConfig": [
        {
            "name": [{"service": SERVICE_NAME}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.05s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
            },
        }
    ],
}

KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000

_DEFAULT_OPTIONS: tuple[ChannelOption, ...] = (
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG, separators=(",", ":"))),
)

#: The gRPC resolver schemes a target may name (the same list in every client).
TARGET_SCHEMES = ("dns", "ipv4", "ipv6", "unix", "unix-abstract", "xds", "passthrough")
_KNOWN_SCHEME = re.compile(r"^(?:dns|ipv4|ipv6|unix|unix-abstract|xds|passthrough):")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*):([^:]*)$")


def check_target(target: object) -> str:
    """Return ``target`` if it is ``host:port`` (port 1-65535) or a gRPC target with a known scheme.

    Anything else (``None``, ``""``, ``"localhost"``, ``"http://host:1"``,
    blanks) raises :class:`ValueError` naming the target and what is expected,
    so a missing setting fails at start-up instead of with every request.
    """

    def bad(why: str) -> ValueError:
        return ValueError(
            f"sessionvalidator: bad target {target!r}: {why}; want host:port (such as localhost:50051) "
            "or a gRPC target such as dns:///name:50051 or unix:///path"
        )

    if not isinstance(target, str):
        raise bad("it is not a string (is the address setting missing?)")
    if not target:
        raise bad("it is empty (is the address setting missing?)")
    if any(ch.isspace() for ch in target):
        raise bad("it contains blanks")
    scheme = _KNOWN_SCHEME.match(target)
    if scheme:
        if not target[scheme.end() :].strip("/"):
            raise bad("nothing follows the scheme")
        return target
    url = _URL.match(target)
    if url:
        raise bad(f"it is a URL with scheme {url.group(1)}, not a gRPC target")
    host_port = _HOST_PORT.match(target)
    if host_port is None:
        raise bad("it has no port")
    host, port = host_port.groups()
    if host in {"", "[]"}:
        raise bad("it has no host")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):  # noqa: PLR2004 - the port range
        raise bad("the port is not a number from 1 to 65535")
    return target


def normalize_target(target: str) -> str:
    """Return ``target`` with ``dns:///`` in front when it names no resolver scheme.

    The DNS resolver returns every address of the name, which is what the
    ``round_robin`` policy needs to spread calls over all validator replicas.
    Raises :class:`ValueError` for a target :func:`check_target` refuses.
    """
    check_target(target)
    if _KNOWN_SCHEME.match(target):
        return target
    return "dns:///" + target


_SEVERAL_ADDRESSES = re.compile(r"^ipv[46]:(?:///)?([^,]+),")


def authority_for(target: str) -> str | None:
    """Return the authority to send for ``target``: its first address when it names several, else ``None``.

    grpc's default authority for ``ipv4:a,b`` holds the comma, which the
    service's native server kind (pygrpc-native) answers INTERNAL on every call.
    """
    several = _SEVERAL_ADDRESSES.match(target)
    return several.group(1) if several else None


def channel_options(extra: Sequence[ChannelOption] = (), *, target: str = "") -> list[ChannelOption]:
    """Return the default channel options, with ``extra`` overriding any of the same name.

    For a ``target`` naming several addresses the authority is set (see :func:`authority_for`).
    """
    authority = authority_for(target)
    defaults = (*_DEFAULT_OPTIONS, *((("grpc.default_authority", authority),) if authority else ()))
    overridden = {name for name, _ in extra}
    return [option for option in defaults if option[0] not in overridden] + list(extra)


def channel_credentials(
    *,
    root_certificates: bytes | None,
    certificate_chain: bytes | None,
    private_key: bytes | None,
    credentials: grpc.ChannelCredentials | None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials from the keyword options, or ``None`` for plaintext.

    ``credentials`` is used as given. Otherwise any of the PEM options selects
    TLS (``root_certificates`` alone: server-authenticated TLS with a private
    CA; with ``certificate_chain`` and ``private_key``: mutual TLS). With none
    of them the channel is plaintext.
    """
    pem_given = any(value is not None for value in (root_certificates, certificate_chain, private_key))
    if credentials is not None:
        if pem_given:
            raise ValueError("pass either credentials or root_certificates/certificate_chain/private_key, not both")
        return credentials
    if (certificate_chain is None) != (private_key is None):
        raise ValueError("mutual TLS needs both certificate_chain and private_key")
    if not pem_given:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=root_certificates,
        private_key=private_key,
        certificate_chain=certificate_chain,
    )


def check_timeout(timeout: float) -> float:
    """Return ``timeout`` if it is a usable deadline in seconds."""
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)
