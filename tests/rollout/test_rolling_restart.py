"""A rolling restart under load loses no call: two replicas, each SIGTERMed and restarted in turn.

A measurement rather than a tier (``make bench-rollout`` runs it on both
server kinds and prints the figures): what it counts depends on timing races
in the servers' shutdown that a loaded shared machine makes more or less
frequent, so it runs on its own, not in ``make test``.

The callers are what users run: one channel per caller thread over both
replicas' addresses with the clients' own service config (round_robin, 3
attempts on UNAVAILABLE, retry throttling; tests/vectors/client_conformance.json),
and the authority set explicitly as the clients set it (a multi-address
target's default authority breaks pygrpc-native, see serverkind.py). A call
counts as lost when it fails after those retries. The deadline is generous
(2 s, not the clients' 150 ms): this machine is shared, and a slow answer is
not what this test is about.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.conftest import load_vectors
from tests.faults.support import SETTINGS, Cookie, Outcome, call_once, health_status, mint_cookies
from tests.support.processes import RedisServer, ValidatorProcess, free_port

pytestmark = pytest.mark.integration

SERVICE_CONFIG = load_vectors("client_conformance.json")["service_config"]
CALLERS = 16
RESTARTS = 6  # SIGTERMs in all, alternating between the two replicas
DELAY_MS = 300  # SESSIONVALIDATOR_SHUTDOWN_DELAY_MS: serving on while callers' balancers move away
SERVING = 1


def replica(redis_server: RedisServer, port: int) -> ValidatorProcess:
    env = {
        **SETTINGS,
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_LISTEN": f"127.0.0.1:{port}",
        "SESSIONVALIDATOR_SHUTDOWN_GRACE_S": "5",
        "SESSIONVALIDATOR_SHUTDOWN_DELAY_MS": str(DELAY_MS),
    }
    validator = ValidatorProcess(env).start()
    deadline = time.monotonic() + 10
    while True:
        try:
            if health_status(f"127.0.0.1:{port}", timeout=1.0) == SERVING:
                return validator
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, "a replica did not turn SERVING"
        time.sleep(0.05)


def wait_for_callers(port: int) -> None:
    """Wait until every caller is connected to the replica at ``port`` again, as a rollout waits for a new pod.

    A caller's channel reconnects to a restarted replica after its reconnect
    backoff (1 s, then longer); terminating the other replica before that
    would leave the callers nothing to fall back on, which no rollout does.
    """
    deadline = time.monotonic() + 20
    while (connected := connections_to(port)) < CALLERS:
        assert time.monotonic() < deadline, f"{connected} of {CALLERS} callers reconnected"
        time.sleep(0.1)


def connections_to(port: int) -> int:
    """This process's established TCP connections to ``port`` (grpc's sockets are IPv6, v4-mapped)."""
    inodes = {str(fd.readlink())[8:-1] for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink()}
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text(encoding="ascii").splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            count += state == "01" and inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port
    return count


def test_rolling_restart_under_load_loses_no_call(redis_server: RedisServer) -> None:
    cookies = mint_cookies(redis_server, 200)
    by_key = {c.key: c for c in cookies}
    ports = [free_port(), free_port()]
    replicas = [replica(redis_server, port) for port in ports]
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    options = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.default_authority", "localhost"),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()

    def caller(index: int) -> None:
        with grpc.insecure_channel(target, options=options) as channel:
            stub = pb_grpc.SessionValidatorStub(channel)
            n = index
            while not stop.is_set():
                cookie: Cookie = cookies[n % len(cookies)]
                n += CALLERS
                outcome = call_once(stub, cookie.key, cookie.request, 2.0)
                with lock:
                    outcomes.append(outcome)
                time.sleep(0.002)

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(CALLERS)]
    exits = []
    try:
        for thread in threads:
            thread.start()
        for port in ports:
            wait_for_callers(port)
        for restart in range(RESTARTS):
            which = restart % 2
            exits.append(replicas[which].terminate(timeout=10))
            replicas[which].close()
            replicas[which] = replica(redis_server, ports[which])
            wait_for_callers(ports[which])
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for validator in replicas:
            validator.close()

    lost = [o for o in outcomes if o.code is not None]
    wrong = [w for o in outcomes if (w := by_key[o.key].wrong(o))]
    print(
        f"\n{len(outcomes)} calls from {CALLERS} callers over {RESTARTS} SIGTERMs and restarts: "
        f"{len(lost)} lost after the clients' retries {dict(collections.Counter(o.code for o in lost))}"
    )
    assert exits == [0] * RESTARTS
    assert wrong == []
    assert len(outcomes) > CALLERS * RESTARTS * 10, "too few calls to prove anything"
    assert lost == []
