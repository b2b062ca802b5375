"""The forward-auth port under slow clients and at shutdown, with real nginx and Caddy attached.

Slow clients cost that port, never the gRPC one: it holds a bounded number of connections and closes one whose
request head does not arrive in time. At SIGTERM it closes the keep-alive connections the gateways hold instead of
waiting out the grace period for them.
"""

from __future__ import annotations

import socket
import time

import grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.mint import mint_session
from tests.gateways.conftest import SECRET, SIGNER, USER
from tests.gateways.support import GATEWAYS, EchoUpstream, protected, request
from tests.support.processes import RedisServer, ValidatorProcess

GRACE_S = 10.0
HEADER_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 40


def start_validator(redis: RedisServer, **env: str) -> tuple[ValidatorProcess, int]:
    validator = ValidatorProcess(
        {
            "SESSIONVALIDATOR_SECRETS": SECRET,
            "SESSIONVALIDATOR_REDIS_URL": redis.url,
            "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:0",
            "SESSIONVALIDATOR_SHUTDOWN_GRACE_S": str(GRACE_S),
            **env,
        }
    ).start()
    validator.wait_ready()
    assert validator.output is not None
    serving = next(r for r in validator.output.json_lines() if r.get("event") == "serving")
    return validator, int(serving["http_port"])


def valid_cookie(redis: RedisServer) -> str:
    session = mint_session(SIGNER, user=USER)
    redis.client().set("sess:" + session.session_id, session.stored_json, ex=session.ttl_s)
    return session.cookie_header("connect.sid")


def test_shutdown_with_keep_alive_gateways_attached_takes_no_grace(redis_server: RedisServer) -> None:
    redis = redis_server
    upstream = EchoUpstream().start()
    validator, http_port = start_validator(redis)
    gateways = [
        GATEWAYS[name](grpc_port=validator.port, http_port=http_port, upstream_port=upstream.port).start()
        for name in ("nginx", "caddy")
    ]
    try:
        cookie = valid_cookie(redis)
        for gateway in gateways:  # each now holds keep-alive connections to the forward-auth port
            for _ in range(3):
                assert request(gateway.port, protected(), [("Cookie", cookie)]).status == 200
        started = time.monotonic()
        assert validator.terminate(timeout=GRACE_S + 10) == 0
        took = time.monotonic() - started
        # Without gateways it ends in well under a second; the grace period is only for calls in progress.
        assert took < GRACE_S / 2, f"SIGTERM took {took:.1f} s with idle keep-alive connections attached"
        for gateway in gateways:
            started = time.monotonic()
            assert request(gateway.port, protected(), [("Cookie", cookie)]).status == 503
            assert time.monotonic() - started < GRACE_S / 2
    finally:
        for gateway in gateways:
            gateway.close()
        validator.close()
        upstream.close()


def test_slow_clients_cost_the_forward_auth_port_never_grpc(redis_server: RedisServer) -> None:
    redis = redis_server
    validator, http_port = start_validator(
        redis,
        SESSIONVALIDATOR_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        SESSIONVALIDATOR_HTTP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
    )
    slow: list[socket.socket] = []
    try:
        # A slowloris: every connection the port allows, each with a request head that never ends.
        for _ in range(MAX_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", http_port), timeout=10)
            sock.sendall(b"GET /auth HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        # One more is answered 503 at once (a gateway passes that on), not queued or left hanging.
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as extra:
            answer = extra.recv(4096)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
            assert b"retry-after: 1" in answer.lower()
        # gRPC is untouched.
        with grpc.insecure_channel(validator.address) as channel:
            cookie = valid_cookie(redis)
            response = pb_grpc.SessionValidatorStub(channel).ValidateSession(
                pb.ValidateSessionRequest(cookie_header_text=cookie), timeout=5
            )
            assert response.verdict == pb.VERDICT_VALID
        # The heads never came: the port closes those connections itself, and serves again.
        for sock in slow:
            sock.settimeout(HEADER_TIMEOUT_S + 10)
            assert sock.recv(4096) == b""
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as fresh:
            fresh.sendall(b"GET /auth HTTP/1.1\r\nHost: x\r\n\r\n")
            assert fresh.recv(4096).startswith(b"HTTP/1.1 401 ")
        # A client that connects and says nothing is closed too; one that sends its head in time is answered.
        with socket.create_connection(("127.0.0.1", http_port), timeout=HEADER_TIMEOUT_S + 10) as silent:
            assert silent.recv(4096) == b""
    finally:
        for sock in slow:
            sock.close()
        validator.close()
