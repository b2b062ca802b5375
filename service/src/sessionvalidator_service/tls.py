"""TLS and mutual TLS for the gRPC port, reloaded when the files change.

gRPC asks the fetcher before each new handshake; it answers with a new
configuration only when a file's size or modification time changed, so
rotating certificates (cert-manager, a mounted Secret) needs no restart and
drops no established connection. A change that does not load (a key that
does not match, a half-written file) is logged and the previous
configuration stays in use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

__all__ = ["TlsFiles", "server_credentials"]

log = logging.getLogger("sessionvalidator.tls")


class TlsFiles:
    """The certificate chain, its key and, for mTLS, the CA that signs clients."""

    def __init__(self, cert: str, key: str, client_ca: str | None) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.client_ca = Path(client_ca) if client_ca else None

    def _paths(self) -> list[Path]:
        return [p for p in (self.cert, self.key, self.client_ca) if p is not None]

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """Return what changes when any file is replaced or rewritten."""
        stats = [p.stat() for p in self._paths()]
        return tuple((s.st_mtime_ns, s.st_size) for s in stats)

    def load(self) -> grpc.ServerCertificateConfiguration:
        """Read the files into a gRPC certificate configuration."""
        return grpc.ssl_server_certificate_configuration(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
        )


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that follow changes to ``files``."""
    current = {"stamp": files.stamp()}

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        try:
            stamp = files.stamp()
            if stamp == current["stamp"]:
                return None
            configuration = files.load()
        except OSError as exc:
            log.error(  # noqa: TRY400 - an operations problem, not a bug: no traceback
                "TLS files not reloaded; the current ones stay in use",
                extra={"event": "tls_reload_failed", "error": str(exc)},
            )
            return None
        current["stamp"] = stamp
        log.info("TLS files reloaded", extra={"event": "tls_reloaded"})
        return configuration

    return grpc.dynamic_ssl_server_credentials(
        files.load(),
        fetch,  # type: ignore[arg-type]  # gRPC documents None as "no change"; the stub omits it
        require_client_authentication=files.client_ca is not None,
    )
