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
    "channel_credentials",
    "channel_options",
    "check_timeout",
    "normalize_target",
]

ChannelOption = tuple[str, Any]

SERVICE_NAME = "sessionvalidator.v1.SessionValidator"

# Per-call deadline in seconds. Well under Envoy ext_authz's 200 ms default, so a
# caller behind Envoy gets our error (and can answer 503) before Envoy gives up.
DEFAULT_TIMEOUT = 0.15

# Spread calls over every address the name resolves to, and retry UNAVAILABLE
# (the store or a validator replica could not answer) twice, quickly. Retries
# happen inside the call's deadline; they never extend it.
SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": SERVICE_NAME}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.05s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}

_DEFAULT_OPTIONS: tuple[ChannelOption, ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG, separators=(",", ":"))),
)

# "scheme:rest" where rest is not just a port number: "dns:///h:1", "ipv4:1.2.3.4:1",
# "unix:/run/sv.sock", "xds:///sv" have a scheme; "localhost:50051", "[::1]:50051",
# "10.0.0.7:50051" and "validator" do not.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\d*$)")


def normalize_target(target: str) -> str:
    """Return ``target`` with ``dns:///`` in front when it names no resolver scheme.

    The DNS resolver returns every address of the name, which is what the
    ``round_robin`` policy needs to spread calls over all validator replicas.
    """
    target = target.strip()
    if not target:
        raise ValueError("target must name the SessionValidator service, such as 'sessionvalidator:50051'")
    if _SCHEME.match(target):
        return target
    return "dns:///" + target


def channel_options(extra: Sequence[ChannelOption] = ()) -> list[ChannelOption]:
    """Return the default channel options, with ``extra`` overriding any of the same name."""
    overridden = {name for name, _ in extra}
    return [option for option in _DEFAULT_OPTIONS if option[0] not in overridden] + list(extra)


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
