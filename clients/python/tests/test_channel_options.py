"""Channel defaults (target, options, service config) and TLS / mutual TLS wiring."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sessionvalidator import Client, SessionValidatorError, StoreUnavailableError
from sessionvalidator._channel import channel_credentials, channel_options, normalize_target
from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("localhost:50051", "dns:///localhost:50051"),
        ("10.0.0.7:50051", "dns:///10.0.0.7:50051"),
        ("[::1]:50051", "dns:///[::1]:50051"),
        ("sv.internal:443", "dns:///sv.internal:443"),
        ("dns:///sv.internal:443", "dns:///sv.internal:443"),
        ("dns://8.8.8.8/sv.internal:443", "dns://8.8.8.8/sv.internal:443"),
        ("ipv4:10.0.0.7:50051,10.0.0.8:50051", "ipv4:10.0.0.7:50051,10.0.0.8:50051"),
        ("unix:/run/sessionvalidator.sock", "unix:/run/sessionvalidator.sock"),
        ("unix:///run/sessionvalidator.sock", "unix:///run/sessionvalidator.sock"),
        ("xds:///sessionvalidator", "xds:///sessionvalidator"),
    ],
)
def test_normalize_target(target: str, expected: str) -> None:
    assert normalize_target(target) == expected


@pytest.mark.parametrize("target", ["  ", "", "sessionvalidator", " sv.internal:443 "])
def test_malformed_target_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="bad target"):
        normalize_target(target)


def test_default_channel_options() -> None:
    options = dict(channel_options())
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 10_000
    assert options["grpc.enable_retries"] == 1
    config = json.loads(options["grpc.service_config"])
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "sessionvalidator.v1.SessionValidator"}]
    assert method["retryPolicy"] == {
        "maxAttempts": 3,
        "initialBackoff": "0.01s",
        "maxBackoff": "0.05s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
    }
    # The service name must be the one in the contract, or the policy silently applies to nothing.
    assert pb.DESCRIPTOR.services_by_name["SessionValidator"].full_name == method["name"][0]["service"]


class _FlakyStore(pb_grpc.SessionValidatorServicer):
    """Fails the first ``failures`` calls as the service does when its store is down, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def ValidateSession(  # noqa: N802 - gRPC method name
        self,
        request: pb.ValidateSessionRequest,
        context: grpc.ServicerContext,
    ) -> pb.ValidateSessionResponse:
        self.calls += 1
        if self.calls <= self.failures:
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.ErrorInfo(reason="STORE_UNAVAILABLE", domain="sessionvalidator.v1"))
            status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="session store unavailable", details=[detail])
            context.abort_with_status(rpc_status.to_status(status))
        return pb.ValidateSessionResponse(verdict=pb.VERDICT_MISSING, reason=pb.REASON_NO_COOKIE)


@contextlib.contextmanager
def _serving(servicer: pb_grpc.SessionValidatorServicer) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_SessionValidatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_unavailable_is_retried_within_the_deadline() -> None:
    """The retry policy really applies to the contract's service: two failures, then the answer."""
    servicer = _FlakyStore(failures=2)
    with _serving(servicer) as target, Client(target, timeout=5) as client:
        assert client.validate_cookie_header(None).reason == "REASON_NO_COOKIE"
    assert servicer.calls == 3


def test_three_unavailable_attempts_raise() -> None:
    servicer = _FlakyStore(failures=5)
    with (
        _serving(servicer) as target,
        Client(target, timeout=5) as client,
        pytest.raises(StoreUnavailableError) as caught,
    ):
        client.validate_cookie_header(None)
    assert servicer.calls == 3
    assert caught.value.reason == "STORE_UNAVAILABLE"


def test_extra_options_override_defaults() -> None:
    options = channel_options([("grpc.keepalive_time_ms", 60_000), ("grpc.max_receive_message_length", 1 << 20)])
    names = [name for name, _ in options]
    assert names.count("grpc.keepalive_time_ms") == 1
    assert dict(options)["grpc.keepalive_time_ms"] == 60_000
    assert dict(options)["grpc.max_receive_message_length"] == 1 << 20


def test_credentials_options_are_checked() -> None:
    none: dict[str, Any] = {"root_certificates": None, "certificate_chain": None, "private_key": None}
    assert channel_credentials(**none, credentials=None) is None
    with pytest.raises(ValueError, match="both certificate_chain and private_key"):
        channel_credentials(**{**none, "certificate_chain": b"pem"}, credentials=None)
    with pytest.raises(ValueError, match="not both"):
        channel_credentials(**{**none, "root_certificates": b"pem"}, credentials=grpc.ssl_channel_credentials())


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_bad_timeouts_are_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Client("localhost:1", timeout=timeout)


# ---------------------------------------------------------------- TLS and mutual TLS


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A throwaway CA, a server certificate for "localhost" and a client certificate "client-a"."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests need the openssl command line tool", pytrace=False)
    work = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca", cwd=work)
    for name, ext in (
        ("server", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        cn = "localhost" if name == "server" else "client-a"
        (work / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=work)
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext",
            cwd=work,
        )  # fmt: skip
    return {path.name: path.read_bytes() for path in work.iterdir() if path.suffix in {".pem", ".key"}}


class _PeerEcho(pb_grpc.SessionValidatorServicer):
    """Answers VALID with the client certificate's common name as the session id (transport test only)."""

    def ValidateSession(  # noqa: N802 - gRPC method name
        self,
        request: pb.ValidateSessionRequest,
        context: grpc.ServicerContext,
    ) -> pb.ValidateSessionResponse:
        names: list[bytes | int] = list(context.auth_context().get("x509_common_name", []))
        common_name = names[0].decode() if names and isinstance(names[0], bytes) else ""
        return pb.ValidateSessionResponse(
            verdict=pb.VERDICT_VALID, reason=pb.REASON_SESSION_ACTIVE, session_id=common_name
        )


@pytest.fixture(scope="module")
def mtls_server(pki: dict[str, bytes]) -> Iterator[str]:
    """An in-process gRPC server that demands a client certificate from the test CA."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_SessionValidatorServicer_to_server(_PeerEcho(), server)
    credentials = grpc.ssl_server_credentials(
        [(pki["server.key"], pki["server.pem"])],
        root_certificates=pki["ca.pem"],
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


# The certificate names "localhost"; the test dials 127.0.0.1 and checks the name it expects.
LOCALHOST = [("grpc.ssl_target_name_override", "localhost")]


def test_mutual_tls(mtls_server: str, pki: dict[str, bytes]) -> None:
    with Client(
        mtls_server,
        root_certificates=pki["ca.pem"],
        certificate_chain=pki["client.pem"],
        private_key=pki["client.key"],
        options=LOCALHOST,
        timeout=5,
    ) as client:
        validation = client.validate_cookie_header(None)
    assert validation.valid
    assert validation.session_id == "client-a"


def test_ready_made_credentials(mtls_server: str, pki: dict[str, bytes]) -> None:
    credentials = grpc.ssl_channel_credentials(pki["ca.pem"], pki["client.key"], pki["client.pem"])
    with Client(mtls_server, credentials=credentials, options=LOCALHOST, timeout=5) as client:
        assert client.validate_signed_value("s:x.y").session_id == "client-a"


def test_tls_without_client_certificate_is_refused(mtls_server: str, pki: dict[str, bytes]) -> None:
    """The server demands a client certificate; the call fails and no verdict is made up."""
    with (
        Client(mtls_server, root_certificates=pki["ca.pem"], options=LOCALHOST, timeout=5) as client,
        pytest.raises(SessionValidatorError),
    ):
        client.validate_cookie_header(None)


def test_plaintext_client_cannot_talk_to_a_tls_server(mtls_server: str) -> None:
    with Client(mtls_server, timeout=1) as client, pytest.raises(SessionValidatorError):
        client.validate_cookie_header(None)
