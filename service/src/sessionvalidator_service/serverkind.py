"""The one home of the server kind: grpcio's server or pygrpc-native's.

Everything that differs between them is decided here: which kind
``SESSIONVALIDATOR_SERVER=auto`` picks and why, how a server is created and
with which options, whether it can serve TLS, send retry pushback or limit
streams per connection. A test that treats a kind differently asks these
fields, so the reason lives here.
Both kinds serve every service the server registers, Envoy's
``envoy.service.auth.v3.Authorization`` (ext_authz.py) included
(tests/fast/test_inprocess_gateway.py runs ``Check`` on each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

__all__ = ["AUTO", "KINDS", "MAX_CONCURRENT_STREAMS", "ServerKind", "kind_named", "resolve"]

# Streams one HTTP/2 connection may have open at once, advertised in SETTINGS:
# a client over it queues calls instead of opening streams the server cancels.
MAX_CONCURRENT_STREAMS = 256


@dataclass(frozen=True, slots=True)
class ServerKind:
    """What a server kind can do, and how to make one."""

    name: str
    tls: bool
    # Trailers carrying grpc-retry-pushback-ms. pygrpc-native 0.5 refuses that
    # reserved key for the methods it serves natively (ValueError "metadata key
    # ... is reserved" inside its failure path), and the call then hangs until
    # the caller's deadline; only its grpcio fallback (generic handlers) sends it.
    retry_pushback: bool
    # SETTINGS_MAX_CONCURRENT_STREAMS is advertised (grpc.max_concurrent_streams).
    # Without it grpcio CANCELs part of a flood on one connection; pygrpc-native
    # has no such option and queues the flood instead (tests/abuse).
    stream_limit: bool
    install_hint: str = ""

    def available(self) -> bool:
        """Whether the server's package is installed."""
        if self.name == "native":
            try:
                import pygrpc_native.aio  # noqa: F401
            except ImportError:
                return False
        return True

    def options(
        self, *, reuse_port: bool, max_concurrent_streams: int = MAX_CONCURRENT_STREAMS
    ) -> list[tuple[str, Any]]:
        """Return the channel arguments a server of this kind is created with."""
        options: list[tuple[str, Any]] = [
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # Accept the clients' keepalive pings (every 30 s), idle
            # connections included, instead of answering too_many_pings.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
        if self.stream_limit and max_concurrent_streams:
            options.append(("grpc.max_concurrent_streams", max_concurrent_streams))
        return options

    def new_server(self, *, reuse_port: bool, max_concurrent_streams: int = MAX_CONCURRENT_STREAMS) -> grpc.aio.Server:
        """Create an unstarted server."""
        options = self.options(reuse_port=reuse_port, max_concurrent_streams=max_concurrent_streams)
        if self.name == "native":
            import pygrpc_native.aio

            server: grpc.aio.Server = pygrpc_native.aio.server(options=options)
            return server
        return grpc.aio.server(options=options)


KINDS = {
    "grpcio": ServerKind("grpcio", tls=True, retry_pushback=True, stream_limit=True),
    # HTTP/2 in Rust, outside the GIL. No TLS.
    "native": ServerKind(
        "native",
        tls=False,
        retry_pushback=False,
        stream_limit=False,
        install_hint="pip install pygrpc-native, a dependency of sessionvalidator-service",
    ),
}


# SESSIONVALIDATOR_SERVER=auto: native whenever it can serve the configuration.
AUTO = "auto"


def kind_named(name: str) -> ServerKind:
    """Return the server kind called ``name`` (``KeyError`` for an unknown one)."""
    return KINDS[name]


def resolve(name: str, *, tls: bool) -> tuple[ServerKind, str]:
    """Return the kind that serves for ``SESSIONVALIDATOR_SERVER=name``, and why (a metric label).

    ``auto`` picks native unless TLS is configured (native has none) or
    pygrpc-native is not installed; a named kind is served as configured
    (config.py refuses one that cannot serve the configuration).
    """
    if name != AUTO:
        return KINDS[name], "configured"
    native = KINDS["native"]
    if tls:
        return KINDS["grpcio"], "auto_tls"
    if not native.available():
        return KINDS["grpcio"], "auto_native_not_installed"
    return native, "auto_no_tls"
