"""Throwaway certificate authorities and leaf certificates, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def make_ca(directory: Path, name: str) -> Pair:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        cwd=directory,
    )
    return Pair(cert, key)


def make_leaf(
    directory: Path,
    name: str,
    ca: Pair,
    *,
    server: bool,
    names: tuple[str, ...] = ("DNS:localhost", "IP:127.0.0.1"),
    client_too: bool = False,
) -> Pair:
    """A certificate signed by ``ca``; a server's names ``names`` (subjectAltName entries).

    ``client_too``: a server's that also serves as a client's (Redis nodes
    present theirs to each other on the cluster bus).
    """
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    usage = ("serverAuth,clientAuth" if client_too else "serverAuth") if server else "clientAuth"
    alt = f"subjectAltName={','.join(names)}\n" if server else ""
    ext.write_text(f"{alt}extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n", encoding="ascii")
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
        cwd=directory,
    )
    return Pair(cert, key)
