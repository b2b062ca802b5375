"""Sentinel and Cluster URLs: the grammar, the configuration errors, and failures as StoreErrors."""
# ruff: noqa: S106 - made-up credentials, parsed out of URLs

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio.sentinel
import redis.exceptions

from sessionvalidator_service.config import ConfigError, Settings, redact_url
from sessionvalidator_service.stores import StoreOptions, StoreUnavailableError
from sessionvalidator_service.stores.redis import RedisSessionStore
from sessionvalidator_service.stores.redis_url import TopologyURL, parse_topology_url
from tests.support.processes import free_port

BASE = {"SESSIONVALIDATOR_SECRETS": "topologies: a signing secret comfortably over 32 bytes"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://127.0.0.1:26379,10.0.0.2:26380/mymaster",
            TopologyURL("sentinel", False, (("127.0.0.1", 26379), ("10.0.0.2", 26380)), service_name="mymaster"),
        ),
        (
            "redis+sentinel://app:p%40ss@s1,s2/my%20master/2?sentinel_password=s%26p&sentinel_username=watcher",
            TopologyURL(
                "sentinel",
                False,
                (("s1", 26379), ("s2", 26379)),
                username="app",
                password="p@ss",
                service_name="my master",
                db=2,
                sentinel_username="watcher",
                sentinel_password="s&p",
            ),
        ),
        (
            "rediss+sentinel://:pw@[::1]:26379/m?ssl_cert_reqs=none&ssl_check_hostname=false",
            TopologyURL(
                "sentinel",
                True,
                (("::1", 26379),),
                password="pw",
                service_name="m",
                tls_options={"ssl_cert_reqs": "none", "ssl_check_hostname": False},
            ),
        ),
        ("redis+cluster://n1:7000", TopologyURL("cluster", False, (("n1", 7000),))),
        ("redis+cluster://n1,n2:7001/", TopologyURL("cluster", False, (("n1", 6379), ("n2", 7001)))),
        (
            "rediss+cluster://u:p@n1:7000/0?ssl_ca_certs=/etc/ca.pem",
            TopologyURL(
                "cluster",
                True,
                (("n1", 7000),),
                username="u",
                password="p",
                tls_options={"ssl_ca_certs": "/etc/ca.pem"},
            ),
        ),
        ("redis://localhost:6379/0", None),
        ("unix:///run/redis.sock", None),
    ],
)
def test_grammar(url: str, expected: TopologyURL | None) -> None:
    assert parse_topology_url(url) == expected
    assert Settings.from_env({**BASE, "SESSIONVALIDATOR_REDIS_URL": url}).store_url == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://s1:26379", "no Sentinel service name"),
        ("redis+sentinel://s1:26379/", "no Sentinel service name"),
        ("redis+sentinel:///mymaster", "no hosts"),
        ("redis+sentinel://:secret@/mymaster", "no hosts"),
        ("redis+sentinel://s1:0/m", "bad port in 's1:0'"),
        ("redis+sentinel://s1:65536/m", "bad port"),
        ("redis+sentinel://s1:abc/m", "bad port"),
        ("redis+sentinel://s1:/m", "bad port"),
        ("redis+sentinel://s1,,s2/m", "empty host"),
        ("redis+sentinel://::1/m", "IPv6"),
        ("redis+sentinel://s1/m/x", "must be a number"),
        ("redis+sentinel://s1/m?sentinel_password=a&sentinel_password=b", "given twice"),
        ("redis+sentinel://s1/m?ssl_ca_certs=/ca.pem", "TLS parameters need rediss+sentinel"),
        ("redis+cluster://", "no hosts"),
        ("redis+cluster://n1/1", "database 0 only"),
        ("redis+cluster://n1?sentinel_password=x", "unknown query parameter"),
        ("rediss+cluster://n1?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis+cluster://u:se#cret@n1", "percent-encode"),
        ("redis+galaxy://n1", "scheme must be"),
    ],
)
def test_mistakes_name_the_variable(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, "SESSIONVALIDATOR_REDIS_URL": url})
    assert caught.value.variable == "SESSIONVALIDATOR_REDIS_URL"
    assert problem in str(caught.value)
    assert "secret" not in str(caught.value).removeprefix("SESSIONVALIDATOR_REDIS_URL")


def test_credentials_stay_out_of_the_repr_and_the_logged_url() -> None:
    url = "redis+sentinel://app:hunter2@s1,s2/m"
    assert "hunter2" not in repr(parse_topology_url(url))
    assert redact_url(url) == "redis+sentinel://app:***@s1,s2/m"
    assert "hunter2" not in repr(parse_topology_url("redis+sentinel://s1/m?sentinel_password=hunter2"))


def test_failures_to_reach_a_topology_are_store_errors() -> None:
    # The exception classes redis-py raises here, and how the store sees them.
    assert issubclass(redis.asyncio.sentinel.MasterNotFoundError, redis.exceptions.ConnectionError)
    assert issubclass(redis.exceptions.ClusterDownError, redis.exceptions.RedisError)
    # Not RedisErrors: the cluster client wraps them.
    assert not issubclass(redis.exceptions.SlotNotCoveredError, redis.exceptions.RedisError)
    assert not issubclass(redis.exceptions.RedisClusterException, redis.exceptions.RedisError)

    async def failures() -> list[str]:
        reasons = []
        for url in (
            f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/mymaster",
            f"redis+cluster://127.0.0.1:{free_port()}",
        ):
            store = RedisSessionStore.from_url(url, StoreOptions(timeout_s=1.0))
            try:
                with pytest.raises(StoreUnavailableError) as ping:
                    await store.ping()
                with pytest.raises(StoreUnavailableError):
                    await store.get_sessions(["a", "b"])
                reasons.append(str(ping.value))
            finally:
                await store.aclose()
        return reasons

    sentinel, cluster = asyncio.run(failures())
    assert "No master found for 'mymaster'" in sentinel
    assert "RedisClusterException" in cluster
