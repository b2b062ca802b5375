"""Redis Sentinel: the service reads the master the sentinels name, through failovers (over TLS too).

Real processes: a master, a replica, a sentinel (quorum 1) and the service.
A call made while the master changes may fail with UNAVAILABLE; it must
never answer a verdict the data does not support.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.mint import MintedSession, mint_session
from sessionvalidator_service.signature import Signer
from tests.support.processes import RedisTls, running_validator
from tests.topologies.topology import SERVICE_NAME, SentinelGroup, batch_verdicts, readiness, verdict, wait_until

SECRET = "topologies: a signing secret comfortably over 32 bytes"  # noqa: S105 - a test secret
SIGNER = Signer([SECRET])
VALID, MISSING, UNAVAILABLE = "VERDICT_VALID", "VERDICT_MISSING", "UNAVAILABLE"


@pytest.fixture
def group(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SentinelGroup]:
    """A plain group, or (``indirect`` parameter ``rediss``) one reached over TLS only."""
    tls = RedisTls.made_in(tmp_path / "tls") if getattr(request, "param", "redis") == "rediss" else None
    group = SentinelGroup(tmp_path, tls)
    try:
        yield group.start()
    finally:
        group.close()


def store(client: redis.Redis, *sessions: MintedSession) -> None:
    """Write sessions as connect-redis does: ``SET sess:<sid> <json> EX <ttl>``."""
    for session in sessions:
        client.set("sess:" + session.session_id, session.stored_json, ex=session.ttl_s)


def env(url: str) -> dict[str, str]:
    return {"SESSIONVALIDATOR_SECRETS": SECRET, "SESSIONVALIDATOR_REDIS_URL": url}


@pytest.mark.parametrize("group", ["redis", "rediss"], indirect=True)
def test_reads_move_to_the_promoted_replica_when_the_master_dies(group: SentinelGroup) -> None:
    sessions = [mint_session(SIGNER, user={"id": index}) for index in range(5)]
    unknown = mint_session(SIGNER, user={"id": "never stored"})
    master = group.master.client()
    store(master, *sessions)
    assert master.wait(1, 2000) == 1  # the replica holds them too
    # The first sentinel listed is down: redis-py must move on to the next at once.
    with (
        running_validator(env(group.url(dead_sentinel_first=True))) as validator,
        grpc.insecure_channel(validator.address) as channel,
    ):
        stub = pb_grpc.SessionValidatorStub(channel)
        assert [verdict(stub, s) for s in sessions] == [VALID] * 5
        assert verdict(stub, unknown) == MISSING
        assert batch_verdicts(stub, [*sessions, unknown]) == [VALID] * 5 + [MISSING]

        old_port = group.master.client_port
        group.master.kill()
        seen: set[str] = set()

        def answered_by_the_new_master() -> bool:
            answers = [verdict(stub, s) for s in sessions]
            assert set(answers) <= {VALID, UNAVAILABLE}, answers
            missing = verdict(stub, unknown)
            assert missing in {MISSING, UNAVAILABLE}
            seen.update([*answers, missing])
            return group.master_port() != old_port and answers == [VALID] * 5 and missing == MISSING

        took = wait_until(answered_by_the_new_master, "answers from the promoted replica", timeout=15)
        print(f"answers from the promoted replica {took:.1f} s after the master died")
        assert UNAVAILABLE in seen  # the outage was seen, as UNAVAILABLE and nothing else
        assert batch_verdicts(stub, [*sessions, unknown]) == [VALID] * 5 + [MISSING]

        # Read-after-write on the new master.
        fresh = mint_session(SIGNER, user={"id": "fresh"})
        store(group.replica.client(), fresh)
        assert verdict(stub, fresh) == VALID
        wait_until(lambda: readiness(validator.address) == "SERVING", "readiness SERVING", timeout=5)
        assert validator.output is not None
        assert any('"serving": false' in line for line in validator.output.lines)  # the blip was reported


def test_a_planned_failover_moves_reads_before_the_old_master_is_demoted(group: SentinelGroup) -> None:
    sessions = [mint_session(SIGNER, user={"id": index}) for index in range(4)]
    master = group.master.client()
    store(master, *sessions)
    assert master.wait(1, 2000) == 1
    with running_validator(env(group.url())) as validator, grpc.insecure_channel(validator.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        assert [verdict(stub, s) for s in sessions] == [VALID] * 4

        assert group.sentinel.client().sentinel_failover(SERVICE_NAME)

        def switched() -> bool:
            answers = [verdict(stub, s) for s in sessions]
            assert set(answers) <= {VALID, UNAVAILABLE}, answers
            return group.master_port() == group.replica.client_port

        wait_until(switched, "the sentinel to name the replica as master", timeout=10)
        # An app that follows +switch-master now writes to the new master,
        # which the old one no longer replicates.
        fresh = mint_session(SIGNER, user={"id": "fresh"})
        store(group.replica.client(), fresh)
        switch_seen = time.monotonic()

        def fresh_is_valid() -> bool:
            answer = verdict(stub, fresh)
            assert answer in {VALID, MISSING, UNAVAILABLE}
            return answer == VALID

        took = wait_until(fresh_is_valid, "the fresh session to be read from the new master", timeout=5)
        # Sentinel demotes the old master about 10 s after the switch; reads
        # moved well before (redis-py alone would keep reading it till then).
        assert group.master.client().role()[0] == "master"
        assert time.monotonic() - switch_seen < 2.0, took
        assert [verdict(stub, s) for s in sessions] == [VALID] * 4
