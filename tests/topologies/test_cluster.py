"""Redis Cluster: every key read from its slot's primary, batches across slots, primaries lost.

Real processes: three primaries made a cluster by ``redis-cli --cluster
create``, one replica (of the second primary), and the service given the
first two nodes. Then a second cluster, reached over TLS only.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.cluster

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.mint import MintedSession, mint_session
from sessionvalidator_service.signature import Signer
from tests.conftest import load_vectors
from tests.harness import seed_client
from tests.support.processes import RedisTls, ValidatorProcess, running_validator
from tests.topologies.topology import Cluster, batch_verdicts, readiness, verdict, wait_until

CORPUS = load_vectors("validate_session.json")
SIGNER = Signer(json.loads(CORPUS["settings"]["SESSIONVALIDATOR_SECRETS"]))
VALID, MISSING, UNAVAILABLE = "VERDICT_VALID", "VERDICT_MISSING", "UNAVAILABLE"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start().add_replica(cluster.nodes[1])
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def validator(cluster: Cluster) -> Iterator[ValidatorProcess]:
    with running_validator({**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": cluster.url()}) as validator:
        yield validator


@pytest.fixture
def stub(validator: ValidatorProcess) -> Iterator[pb_grpc.SessionValidatorStub]:
    with grpc.insecure_channel(validator.address) as channel:
        yield pb_grpc.SessionValidatorStub(channel)


def store(client: redis.cluster.RedisCluster, *sessions: MintedSession) -> None:
    """Write sessions as connect-redis does: ``SET sess:<sid> <json> EX <ttl>``."""
    for session in sessions:
        client.set("sess:" + session.session_id, session.stored_json, ex=session.ttl_s)


def port_of(client: redis.cluster.RedisCluster, session: MintedSession) -> int:
    """The port of the primary that owns the session's key."""
    node = client.get_node_from_key("sess:" + session.session_id)  # type: ignore[no-untyped-call]  # unannotated
    return int(node.port)


def unstored(client: redis.cluster.RedisCluster, port: int, *, owned: bool) -> MintedSession:
    """A session never written, whose key the primary on ``port`` owns (or not)."""
    while True:
        session = mint_session(SIGNER)
        if (port_of(client, session) == port) is owned:
            return session


def request_of(case: dict[str, Any]) -> pb.ValidateSessionRequest:
    spec = case["request"]
    if "cookie_header_b64" in spec:
        return pb.ValidateSessionRequest(cookie_header=base64.b64decode(spec["cookie_header_b64"]))
    return pb.ValidateSessionRequest(**spec)


def check(case: dict[str, Any], response: pb.ValidateSessionResponse) -> None:
    expect = case["expect"]
    name = case["name"]
    assert pb.Verdict.Name(response.verdict) == expect["verdict"], name
    assert pb.Reason.Name(response.reason) == expect["reason"], name
    if "user" in expect:
        user = expect["user"]
        assert response.user.id == user["id"], name
        for field in ("username", "display_name", "email"):
            assert getattr(response.user, field) == user.get(field, ""), name
        assert list(response.user.roles) == user.get("roles", []), name


def test_vectors_and_a_batch_across_every_primary(cluster: Cluster, stub: pb_grpc.SessionValidatorStub) -> None:
    client = cluster.client()
    # The shared vectors, sessions and user records, spread over the slots.
    seed_client(client, CORPUS)
    many = [mint_session(SIGNER, user=str(7 + index % 3)) for index in range(150)]  # user:7, user:8, user:9
    store(client, *many)
    assert {port_of(client, s) for s in many} == {node.port for node in cluster.primaries()}
    wrong_type = mint_session(SIGNER)
    client.hset("sess:" + wrong_type.session_id, mapping={"not": "a session"})
    unknown = mint_session(SIGNER)

    for case in CORPUS["cases"]:
        check(case, stub.ValidateSession(request_of(case), timeout=5))

    # One batch: GET and PTTL for every key, split by redis-py over the three
    # primaries, then GET and HGETALL for the users.
    extra = [*many, wrong_type, unknown]
    requests = [request_of(c) for c in CORPUS["cases"]]
    requests += [pb.ValidateSessionRequest(cookie_header_text=s.cookie_header("connect.sid")) for s in extra]
    responses = list(stub.ValidateSessions(pb.ValidateSessionsRequest(requests=requests), timeout=5).responses)
    assert len(responses) == len(requests)
    for case, response in zip(CORPUS["cases"], responses, strict=False):
        check(case, response)
    answers = responses[len(CORPUS["cases"]) :]
    for index, response in enumerate(answers[: len(many)]):
        assert pb.Verdict.Name(response.verdict) == VALID
        assert response.user.username == ("seven", "eight", "nine")[index % 3]
    # WRONGTYPE came back as a value for its own key, not as a failed batch.
    assert pb.Reason.Name(answers[-2].reason) == "REASON_CORRUPT_SESSION"
    assert pb.Reason.Name(answers[-1].reason) == "REASON_SESSION_NOT_FOUND"


def test_a_lost_primary_is_unavailable_never_missing(
    cluster: Cluster, validator: ValidatorProcess, stub: pb_grpc.SessionValidatorStub
) -> None:
    client = cluster.client()
    victim = cluster.nodes[0]  # also the first node of the service's URL
    sessions = [mint_session(SIGNER, user={"id": index}) for index in range(30)]
    store(client, *sessions)
    on_victim = [s for s in sessions if port_of(client, s) == victim.port]
    elsewhere = [s for s in sessions if port_of(client, s) != victim.port]
    assert on_victim
    assert elsewhere
    unknown_on_victim = unstored(client, victim.port, owned=True)
    unknown_elsewhere = unstored(client, victim.port, owned=False)
    client.close()
    assert batch_verdicts(stub, sessions) == [VALID] * len(sessions)
    assert readiness(validator.address) == "SERVING"

    victim.kill()
    killed = time.monotonic()
    not_serving_after = None
    seen_elsewhere: set[str] = set()
    # Until the cluster, past its 2 s node timeout, marks the node failed and,
    # with slots uncovered, refuses every key (CLUSTERDOWN), and readiness
    # has said NOT_SERVING.
    while not_serving_after is None or UNAVAILABLE not in seen_elsewhere:
        assert time.monotonic() - killed < 10, (not_serving_after, seen_elsewhere)
        assert verdict(stub, on_victim[0]) == UNAVAILABLE
        assert verdict(stub, unknown_on_victim) == UNAVAILABLE  # unknown is not the same as unreadable
        seen_elsewhere.add(verdict(stub, elsewhere[0]))
        assert seen_elsewhere <= {VALID, UNAVAILABLE}
        assert verdict(stub, unknown_elsewhere) in {MISSING, UNAVAILABLE}
        assert batch_verdicts(stub, sessions) == UNAVAILABLE
        if not_serving_after is None and readiness(validator.address) == "NOT_SERVING":
            not_serving_after = time.monotonic() - killed
    assert not_serving_after < 2.0
    assert cluster.nodes[1].client().cluster("INFO")["cluster_state"] == "fail"

    # Back on the same port with its cluster configuration, but empty: no persistence.
    victim.start().wait_up()
    Cluster.wait_ok(cluster.nodes)
    wait_until(lambda: readiness(validator.address) == "SERVING", "readiness SERVING again", timeout=10)
    wait_until(lambda: verdict(stub, elsewhere[0]) == VALID, "answers again", timeout=5)
    assert [verdict(stub, s) for s in elsewhere] == [VALID] * len(elsewhere)
    assert [verdict(stub, s) for s in on_victim] == [MISSING] * len(on_victim)  # lost with the process


def test_a_hung_primary_is_replaced_by_its_promoted_replica(
    cluster: Cluster, validator: ValidatorProcess, stub: pb_grpc.SessionValidatorStub
) -> None:
    client = cluster.client()
    primary = next(n for n in cluster.primaries() if n.client().info("replication")["connected_slaves"] == 1)
    on_primary: list[MintedSession] = []
    while len(on_primary) < 5:
        session = unstored(client, primary.port, owned=True)
        on_primary.append(session)
    elsewhere = unstored(client, primary.port, owned=False)
    store(client, elsewhere)
    client.close()
    direct = primary.client()
    for session in on_primary:
        direct.set("sess:" + session.session_id, session.stored_json, ex=session.ttl_s)
    assert direct.wait(1, 2000) == 1  # the replica holds them
    unknown = unstored(cluster.client(), primary.port, owned=True)
    assert [verdict(stub, s) for s in on_primary] == [VALID] * 5

    # Hung, not dead: connections are accepted and never answered, so every
    # call and ping times out; the cluster promotes the replica after 2 s.
    primary.pause()
    try:
        seen: set[str] = set()

        def served_by_the_promoted_replica() -> bool:
            answers = [verdict(stub, s) for s in on_primary]
            assert set(answers) <= {VALID, UNAVAILABLE}, answers
            assert verdict(stub, unknown) in {MISSING, UNAVAILABLE}
            assert verdict(stub, elsewhere) in {VALID, UNAVAILABLE}
            seen.update(answers)
            return answers == [VALID] * 5 and readiness(validator.address) == "SERVING"

        took = wait_until(served_by_the_promoted_replica, "answers from the promoted replica", timeout=15)
        print(f"answers from the promoted replica {took:.1f} s after the primary hung")
        assert UNAVAILABLE in seen
        assert verdict(stub, unknown) == MISSING
    finally:
        primary.resume()
    Cluster.wait_ok(cluster.nodes)  # the old primary rejoins as a replica


def test_a_cluster_over_tls(tmp_path: Path) -> None:
    tls_cluster = Cluster(tmp_path / "nodes", tls=RedisTls.made_in(tmp_path / "tls"))
    try:
        client = tls_cluster.start().client()  # the plain ports, for seeding
        sessions = [mint_session(SIGNER, user={"id": index}) for index in range(30)]
        store(client, *sessions)
        assert {port_of(client, s) for s in sessions} == {node.port for node in tls_cluster.primaries()}
        unknown = mint_session(SIGNER)
        with (
            running_validator({**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": tls_cluster.url()}) as validator,
            grpc.insecure_channel(validator.address) as channel,
        ):
            stub = pb_grpc.SessionValidatorStub(channel)
            assert [verdict(stub, s) for s in sessions[:3]] == [VALID] * 3
            assert verdict(stub, unknown) == MISSING
            assert batch_verdicts(stub, [*sessions, unknown]) == [VALID] * 30 + [MISSING]
            assert readiness(validator.address) == "SERVING"  # every primary answered a PING over TLS
    finally:
        tls_cluster.close()
