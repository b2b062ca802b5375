"""``rediss://`` against a real TLS redis-server: the pipelined connection, the session cache, the service.

redis-server listens for TLS with a certificate from a CA this module makes
(tests/support/certs.py); its plain port stays for seeding. Covered: the
``ssl_*`` settings mean what they mean to redis-py and are checked at
startup; the corpus's verdicts through TLS; invalidations through TLS;
mutual TLS; a wrong CA and a host name the certificate does not name, each
refused with an error naming the URL (credentials masked); a restart and a
certificate rotation on the Redis side.
"""
# ruff: noqa: S105, S106 - made-up credentials for throwaway servers

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import uvloop

from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.config import ConfigError, Settings, redact_url
from sessionvalidator_service.stores import StoredSession, StoreOptions, StoreUnavailableError
from sessionvalidator_service.stores.redis import RedisSessionStore
from sessionvalidator_service.stores.redis_pipeline import PipelinedConnection, PipelineTarget, pipeline_target
from sessionvalidator_service.stores.redis_url import check_redis_url
from tests.harness import seed
from tests.integration.conftest import CORPUS
from tests.integration.test_session_cache import CHANGED, SESSION, until, warm
from tests.support.certs import Pair, make_ca, make_leaf
from tests.support.processes import RedisServer, RedisTls, running_validator
from tests.support.vectors import check_vector, request_of

T = TypeVar("T")
PASSWORD = "tls-test-password-do-not-log"


@dataclass(frozen=True)
class Certs:
    ca: Pair
    server: Pair  # names localhost and 127.0.0.1
    rotated: Pair  # the same names, the same CA, a new key
    elsewhere: Pair  # names only elsewhere.test
    client: Pair
    other_ca: Pair  # signed none of the above


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("redis-tls")
    ca = make_ca(directory, "ca")
    return Certs(
        ca=ca,
        server=make_leaf(directory, "redis", ca, server=True),
        rotated=make_leaf(directory, "redis-rotated", ca, server=True),
        elsewhere=make_leaf(directory, "redis-elsewhere", ca, server=True, names=("DNS:elsewhere.test",)),
        client=make_leaf(directory, "client", ca, server=False),
        other_ca=make_ca(directory, "other-ca"),
    )


def tls_redis(certs: Certs, server: Pair | None = None, *, auth_clients: bool = False) -> RedisServer:
    pair = server or certs.server
    return RedisServer(tls=RedisTls(pair.cert, pair.key, certs.ca.cert, auth_clients=auth_clients)).start()


@pytest.fixture
def tls_server(certs: Certs) -> Iterator[RedisServer]:
    server = tls_redis(certs)
    try:
        yield server
    finally:
        server.close()


def run(factory: Callable[[RedisSessionStore], Awaitable[T]], url: str, session_cache: int = 100) -> T:
    async def main() -> T:
        store = RedisSessionStore.from_url(url, StoreOptions(timeout_s=1, session_cache=session_cache))
        try:
            return await factory(store)
        finally:
            await store.aclose()

    return uvloop.run(main())


async def ping(url: str) -> Any:
    target = pipeline_target(url)
    assert target is not None
    connection = PipelinedConnection(target, connect_timeout_s=2)
    try:
        return await connection.execute("PING", timeout_s=2)
    finally:
        await connection.aclose()


# ---------------------------------------------------------------- the URL


def test_rediss_gets_a_pipelined_connection_verifying_as_redis_py_does() -> None:
    target = pipeline_target("rediss://u:p%40ss@cache.example:6380/2")
    assert target == PipelineTarget(host="cache.example", port=6380, db=2, username="u", password="p@ss")
    assert target.tls is not None
    assert target.tls.verify_mode == ssl.CERT_REQUIRED  # redis-py's SSLConnection default
    assert target.tls.check_hostname
    assert target.url == "rediss://u:***@cache.example:6380/2"


@pytest.mark.parametrize(
    ("query", "verify_mode", "check_hostname"),
    [
        ("ssl_check_hostname=false", ssl.CERT_REQUIRED, False),
        ("ssl_cert_reqs=optional", ssl.CERT_OPTIONAL, True),
        ("ssl_cert_reqs=none", ssl.CERT_NONE, False),  # redis-py checks no name it does not verify
        ("ssl_cert_reqs=none&ssl_check_hostname=true", ssl.CERT_NONE, False),
    ],
)
def test_the_tls_settings_mean_what_they_mean_to_redis_py(
    query: str, verify_mode: ssl.VerifyMode, check_hostname: bool
) -> None:
    target = pipeline_target(f"rediss://h?{query}")
    assert target is not None
    assert target.tls is not None
    assert (target.tls.verify_mode, target.tls.check_hostname) == (verify_mode, check_hostname)


def test_the_tls_version_floor_and_verify_flags_reach_the_context() -> None:
    target = pipeline_target("rediss://h?ssl_min_version=772&ssl_include_verify_flags=VERIFY_X509_STRICT")
    assert target is not None
    assert target.tls is not None
    assert target.tls.minimum_version == ssl.TLSVersion.TLSv1_3
    assert target.tls.verify_flags & ssl.VERIFY_X509_STRICT


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("rediss://h?ssl_ca_cert=/ca.pem", "unknown TLS parameter 'ssl_ca_cert'"),  # a typo, not ignored
        ("redis://h?ssl_ca_certs=/ca.pem", "TLS parameters need rediss://"),
        ("rediss://h?ssl_ca_certs=/nonexistent/ca.pem", "do not load .*ssl_ca_certs=/nonexistent/ca.pem"),
        ("rediss://h?ssl_cert_reqs=maybe", "Invalid SSL Certificate Requirements Flag"),
        ("rediss://h?ssl_certfile=/etc/hostname", "do not load .*ssl_certfile=/etc/hostname"),
    ],
)
def test_tls_settings_that_cannot_work_are_refused_at_startup(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_redis_url(url)


def test_a_ca_file_that_does_not_load_stops_startup_naming_the_variable() -> None:
    env = {
        "SESSIONVALIDATOR_SECRETS": "a-secret-that-is-long-enough-000000",
        "SESSIONVALIDATOR_STORE_URL": f"rediss://:{PASSWORD}@h:6380/0?ssl_ca_certs=/nonexistent/ca.pem",
    }
    with pytest.raises(ConfigError, match="SESSIONVALIDATOR_STORE_URL: the TLS settings do not load") as refused:
        Settings.from_env(env)
    assert PASSWORD not in str(refused.value)


def test_a_key_password_in_the_url_is_masked() -> None:
    url = "rediss://app:pw@h:6380/0?ssl_keyfile=/k.pem&ssl_password=s3cret&ssl_certfile=/c.pem"
    assert redact_url(url) == "rediss://app:***@h:6380/0?ssl_keyfile=/k.pem&ssl_password=***&ssl_certfile=/c.pem"


# ---------------------------------------------------------------- the store and the service over TLS


def test_every_vector_through_tls_with_the_session_cache(tls_server: RedisServer) -> None:
    seed(tls_server, CORPUS)
    tls_server.client().config_set("requirepass", PASSWORD)  # AUTH over TLS; the plain client is done
    url = tls_server.tls_url(userinfo=f":{PASSWORD}")
    with running_validator({**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": url}) as validator:
        with grpc.insecure_channel(validator.address) as channel:
            stub = pb_grpc.SessionValidatorStub(channel)
            for case in CORPUS["cases"]:
                check_vector(stub.ValidateSession(request_of(case), timeout=5), case["expect"])
        assert validator.output is not None
        validator.output.wait_for(lambda line: '"event": "session_cache_on"' in line, timeout=5)
        assert not any(PASSWORD in line for line in validator.output.lines)
    verdicts = {case["expect"]["verdict"] for case in CORPUS["cases"]}
    assert {"VERDICT_VALID", "VERDICT_MISSING", "VERDICT_EXPIRED"} <= verdicts


def test_the_data_and_invalidation_connections_are_both_tls(tls_server: RedisServer) -> None:
    client = tls_server.client()
    client.set("sess:a", SESSION)

    async def scenario(store: RedisSessionStore) -> list[dict[str, Any]]:
        await warm(store)
        return [c for c in client.client_list() if c["laddr"].endswith(f":{tls_server.tls_port}")]

    connections = run(scenario, tls_server.tls_url())
    kinds = sorted(
        "subscribed" if "P" in c["flags"] else "tracked" if "t" in c["flags"] else "other" for c in connections
    )
    assert kinds == ["subscribed", "tracked"]  # the invalidations' connection and the tracked data connection


def test_a_rewrite_reaches_the_cache_through_tls_within_milliseconds(tls_server: RedisServer) -> None:
    client = tls_server.client()
    client.set("sess:a", SESSION, ex=3600)

    async def scenario(store: RedisSessionStore) -> tuple[float, StoredSession]:
        await warm(store)
        client.set("sess:a", CHANGED, keepttl=True)
        took = await until(lambda: store.peek("a") is None, within_s=0.5)
        (after,) = await store.get_sessions(["a"])
        return took, after

    took, after = run(scenario, tls_server.tls_url())
    print(f"invalidated {took * 1000:.1f} ms after the change, through TLS")
    assert after.data == CHANGED


def test_mutual_tls(certs: Certs, caplog: pytest.LogCaptureFixture) -> None:
    server = tls_redis(certs, auth_clients=True)
    try:
        with_cert = server.tls_url(ssl_certfile=str(certs.client.cert), ssl_keyfile=str(certs.client.key))
        assert uvloop.run(ping(with_cert)) == b"PONG"
        with (
            caplog.at_level(logging.ERROR, logger="sessionvalidator.store"),
            pytest.raises(StoreUnavailableError, match="certificate required"),
        ):
            uvloop.run(ping(server.tls_url()))
    finally:
        server.close()
    (refused,) = [r for r in caplog.records if getattr(r, "event", "") == "store_tls_failed"]
    assert "certificate required" in refused.getMessage()
    assert refused.store_url == server.tls_url()  # type: ignore[attr-defined]  # set by extra=


def test_a_wrong_ca_is_refused_at_startup_naming_the_url_without_its_password(
    tls_server: RedisServer, certs: Certs
) -> None:
    url = tls_server.tls_url(userinfo=f"app:{PASSWORD}", ssl_ca_certs=str(certs.other_ca.cert))
    env = {**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": url}
    case = next(c for c in CORPUS["cases"] if c["expect"]["verdict"] == "VERDICT_VALID")
    with running_validator(env, ready=False) as validator:
        assert validator.output is not None
        line = validator.output.wait_for(lambda line: '"event": "store_tls_failed"' in line, timeout=10)
        record = json.loads(line)
        assert record["level"] == "ERROR"
        assert (
            record["store_url"]
            == f"rediss://app:***@localhost:{tls_server.tls_port}/0?ssl_ca_certs={certs.other_ca.cert}"
        )
        assert "certificate verify failed" in record["message"]
        with grpc.insecure_channel(validator.address) as channel, pytest.raises(grpc.RpcError) as failed:
            pb_grpc.SessionValidatorStub(channel).ValidateSession(request_of(case), timeout=5)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not any(PASSWORD in line for line in validator.output.lines)
        # Logged once, not once per attempt (readiness retries every second).
        assert sum('"store_tls_failed"' in line for line in validator.output.lines) == 1


def test_a_host_name_the_certificate_does_not_name_is_refused_unless_the_check_is_off(certs: Certs) -> None:
    server = tls_redis(certs, certs.elsewhere)
    try:
        with pytest.raises(StoreUnavailableError, match="Hostname mismatch"):
            uvloop.run(ping(server.tls_url()))
        assert uvloop.run(ping(server.tls_url(ssl_check_hostname="false"))) == b"PONG"
        with pytest.raises(StoreUnavailableError, match="IP address mismatch"):
            uvloop.run(ping(server.tls_url(host="127.0.0.1")))
    finally:
        server.close()


def test_a_restarted_tls_redis_clears_the_cache_then_serves_and_caches_again(
    tls_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    tls_server.client().set("sess:a", SESSION)

    async def scenario(store: RedisSessionStore) -> tuple[StoredSession, StoredSession]:
        await warm(store)
        tls_server.stop()
        await until(lambda: store.peek("a") is None, within_s=0.5)
        tls_server.start()  # empty: the session is gone
        (gone,) = await store.get_sessions(["a"])
        tls_server.client().set("sess:a", CHANGED)
        return gone, await warm(store)  # tracking is back over new TLS connections

    with caplog.at_level(logging.INFO, logger="sessionvalidator.store"):
        gone, back = run(scenario, tls_server.tls_url())
    assert gone.data is None
    assert back.data == CHANGED
    assert [getattr(r, "event", "") for r in caplog.records].count("session_cache_on") == 2


def served_certificate(port: int, ca: Path) -> bytes:
    """The certificate a new TLS connection to ``port`` is shown (DER)."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("localhost", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_a_certificate_rotated_on_the_redis_side_is_accepted_by_the_next_connection(
    tls_server: RedisServer, certs: Certs
) -> None:
    client = tls_server.client()
    client.set("sess:a", SESSION)
    before = served_certificate(tls_server.tls_port, certs.ca.cert)

    async def scenario(store: RedisSessionStore) -> StoredSession:
        await warm(store)
        client.execute_command(  # type: ignore[no-untyped-call]  # both at once: each alone mismatches the other
            "CONFIG", "SET", "tls-cert-file", str(certs.rotated.cert), "tls-key-file", str(certs.rotated.key)
        )
        client.client_kill_filter(_type="normal", skipme=True)  # the service must open new TLS connections
        client.client_kill_filter(_type="pubsub")
        client.set("sess:a", CHANGED)
        for _ in range(100):
            try:
                (found,) = await store.get_sessions(["a"])
            except StoreUnavailableError:  # the connection killed under it
                await asyncio.sleep(0.01)
                continue
            if found.data == CHANGED:
                break
        return await warm(store)

    found = run(scenario, tls_server.tls_url())
    after = served_certificate(tls_server.tls_port, certs.ca.cert)
    assert before != after  # the rotation took place
    assert ssl.DER_cert_to_PEM_cert(after).strip() == certs.rotated.cert.read_text().strip()
    assert found.data == CHANGED
