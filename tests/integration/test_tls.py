"""TLS and mutual TLS on the gRPC port, with certificates this test makes; reloaded when the files change."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.integration.conftest import CORPUS
from tests.support.certs import Pair, make_ca, make_leaf
from tests.support.processes import RedisServer, running_validator, server_kind

pytestmark = pytest.mark.skipif(not server_kind().tls, reason="this server kind cannot serve TLS (see serverkind.py)")

REQUEST = pb.ValidateSessionRequest(cookie_header_text="theme=dark")


def ask(address: str, ca: Pair | None, client: Pair | None = None) -> int:
    """The verdict over a channel trusting ``ca`` (None: plaintext), or raise RpcError."""
    if ca is None:
        channel = grpc.insecure_channel(address)
    else:
        credentials = grpc.ssl_channel_credentials(
            ca.cert.read_bytes(),
            client.key.read_bytes() if client else None,
            client.cert.read_bytes() if client else None,
        )
        channel = grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "localhost")])
    with channel:
        return int(pb_grpc.SessionValidatorStub(channel).ValidateSession(REQUEST, timeout=3).verdict)


def env_for(redis_server: RedisServer, server: Pair, client_ca: Pair | None = None) -> dict[str, str]:
    env = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_TLS_CERT_FILE": str(server.cert),
        "SESSIONVALIDATOR_TLS_KEY_FILE": str(server.key),
    }
    if client_ca is not None:
        env["SESSIONVALIDATOR_TLS_CLIENT_CA_FILE"] = str(client_ca.cert)
    return env


def test_tls(redis_server: RedisServer, tmp_path: Path) -> None:
    ca, other_ca = make_ca(tmp_path, "ca"), make_ca(tmp_path, "other-ca")
    server = make_leaf(tmp_path, "server", ca, server=True)
    with running_validator(env_for(redis_server, server)) as validator:
        assert ask(validator.address, ca) == pb.VERDICT_MISSING
        for wrong in (None, other_ca):  # plaintext, or a CA that did not sign the server
            with pytest.raises(grpc.RpcError) as caught:
                ask(validator.address, wrong)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_and_the_healthcheck(redis_server: RedisServer, tmp_path: Path) -> None:
    ca, clients_ca, rogue_ca = make_ca(tmp_path, "ca"), make_ca(tmp_path, "clients"), make_ca(tmp_path, "rogue")
    server = make_leaf(tmp_path, "server", ca, server=True)
    client = make_leaf(tmp_path, "client", clients_ca, server=False)
    rogue = make_leaf(tmp_path, "rogue-client", rogue_ca, server=False)
    with running_validator(env_for(redis_server, server, clients_ca)) as validator:
        assert ask(validator.address, ca, client) == pb.VERDICT_MISSING
        for who in (None, rogue):  # no client certificate, or one the service does not trust
            with pytest.raises(grpc.RpcError) as caught:
                ask(validator.address, ca, who)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        healthcheck = [
            sys.executable,
            "-m",
            "sessionvalidator_service",
            "healthcheck",
            "--address",
            validator.address,
            "--tls-ca",
            str(ca.cert),
            "--tls-server-name",
            "localhost",
        ]
        assert subprocess.run(healthcheck, capture_output=True, timeout=30, check=False).returncode == 1
        with_cert = [*healthcheck, "--tls-cert", str(client.cert), "--tls-key", str(client.key)]
        assert subprocess.run(with_cert, capture_output=True, timeout=30, check=False).returncode == 0


def test_certificates_reload_when_the_files_change(redis_server: RedisServer, tmp_path: Path) -> None:
    old_ca, new_ca = make_ca(tmp_path / "old", "old-ca"), make_ca(tmp_path / "new", "new-ca")
    old = make_leaf(tmp_path / "old", "server", old_ca, server=True)
    new = make_leaf(tmp_path / "new", "server", new_ca, server=True)
    live = Pair(tmp_path / "live.crt", tmp_path / "live.key")
    shutil.copy(old.cert, live.cert)
    shutil.copy(old.key, live.key)
    with running_validator(env_for(redis_server, live)) as validator:
        assert ask(validator.address, old_ca) == pb.VERDICT_MISSING
        time.sleep(0.05)  # a distinct modification time
        shutil.copy(new.key, live.key)
        shutil.copy(new.cert, live.cert)
        deadline = time.monotonic() + 10
        while True:  # the next handshake picks the new files up
            try:
                assert ask(validator.address, new_ca) == pb.VERDICT_MISSING
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with pytest.raises(grpc.RpcError):
            ask(validator.address, old_ca)
        assert validator.output is not None
        assert any(r.get("event") == "tls_reloaded" for r in validator.output.json_lines())
