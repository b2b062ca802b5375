"""Real Redis topologies: a Sentinel-monitored master and replica, a Redis Cluster.

Every node is a real redis-server on free loopback ports, with its own
directory and log under the test's temporary directory. Waits are bounded;
teardown kills only the processes started here.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
import redis
import redis.cluster
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.mint import MintedSession
from tests.support.processes import RedisTls, free_port

REDIS_SERVER = shutil.which("redis-server") or "redis-server"
REDIS_CLI = shutil.which("redis-cli")
SERVICE_NAME = "sessions"


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> float:
    """Poll ``predicate`` (Redis errors count as false) until it holds; return the seconds taken."""
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except (redis.exceptions.RedisError, OSError):
            pass
        if time.monotonic() - start > timeout:
            msg = f"timed out after {timeout} s waiting for {what}"
            raise TimeoutError(msg)
        time.sleep(0.05)


class Node:
    """One redis-server process, or a sentinel when given its configuration.

    With ``tls`` it also listens for TLS on ``tls_port`` and speaks TLS to
    the other nodes (replication, the cluster bus, a sentinel's checks); the
    plain port stays for the tests' own clients.
    """

    def __init__(
        self, root: Path, name: str, *args: str, sentinel_config: str | None = None, tls: RedisTls | None = None
    ) -> None:
        self.name = name
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else 0
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.args = args
        if tls is not None:
            self.args += (*tls.args(self.tls_port), "--tls-replication", "yes")
            if "--cluster-enabled" in args:
                self.args += ("--tls-cluster", "yes")
        self.sentinel_config = sentinel_config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_port(self) -> int:
        """The port the service is given (or told of): the TLS port when there is one."""
        return self.tls_port or self.port

    def start(self) -> Node:
        common = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        common += ["--logfile", str(self.dir / "redis.log"), "--protected-mode", "no"]
        if self.sentinel_config is not None:
            config = self.dir / "sentinel.conf"  # Sentinel rewrites it
            config.write_text(self.sentinel_config, encoding="utf-8")
            argv = [REDIS_SERVER, str(config), "--sentinel", *common, *self.args]
        else:
            argv = [REDIS_SERVER, *common, "--save", "", "--appendonly", "no", *self.args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def wait_up(self) -> Node:
        wait_until(self._answers, f"{self.name} on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            msg = f"{self.name} is not running:\n{self.log_tail()}"
            raise RuntimeError(msg)
        return bool(self.client().ping())

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        log = self.dir / "redis.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


class SentinelGroup:
    """A master, one replica and one sentinel watching them (quorum 1, 1 s to notice a death).

    With ``tls`` every node is reached over TLS: the sentinel names the TLS ports.
    """

    def __init__(self, root: Path, tls: RedisTls | None = None) -> None:
        self.tls = tls
        # No 5 s wait for more replicas before a diskless full sync.
        self.master = Node(root, "master", "--repl-diskless-sync-delay", "0", tls=tls)
        master_port = self.master.client_port
        self.replica = Node(
            root, "replica", "--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", str(master_port), tls=tls
        )
        self.sentinel = Node(
            root,
            "sentinel",
            sentinel_config=(
                f"sentinel monitor {SERVICE_NAME} 127.0.0.1 {master_port} 1\n"
                f"sentinel down-after-milliseconds {SERVICE_NAME} 1000\n"
                f"sentinel failover-timeout {SERVICE_NAME} 4000\n"
            ),
            tls=tls,
        )
        self.nodes = (self.master, self.replica, self.sentinel)

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        self.master.wait_up()
        self.replica.wait_up()
        wait_until(lambda: self.replica.client().info("replication")["master_link_status"] == "up", "replication")
        # Started last, the sentinel finds the replica in its first INFO of
        # the master, not 10 s later.
        self.sentinel.start().wait_up()
        wait_until(self._sentinel_sees_the_replica, "the sentinel to discover the replica")
        return self

    def _sentinel_sees_the_replica(self) -> bool:
        replicas = self.sentinel.client().sentinel_slaves(SERVICE_NAME)
        return len(replicas) == 1 and not replicas[0]["is_sdown"]

    def master_port(self) -> int:
        """The master's port, as the sentinel names it."""
        address = self.sentinel.client().sentinel_get_master_addr_by_name(SERVICE_NAME)
        assert isinstance(address, tuple), f"the sentinel names no master: {address!r}"
        return int(address[1])

    def node_on(self, port: int) -> Node:
        return next(node for node in (self.master, self.replica) if node.client_port == port)

    def url(self, *, dead_sentinel_first: bool = False) -> str:
        hosts = [f"127.0.0.1:{self.sentinel.client_port}"]
        if dead_sentinel_first:
            hosts.insert(0, f"127.0.0.1:{free_port()}")
        if self.tls is None:
            return f"redis+sentinel://{','.join(hosts)}/{SERVICE_NAME}"
        return f"rediss+sentinel://{','.join(hosts)}/{SERVICE_NAME}?ssl_ca_certs={self.tls.ca}"

    def close(self) -> None:
        for node in self.nodes:
            node.kill()


class Cluster:
    """A Redis Cluster of primaries (2 s node timeout); replicas can be added.

    With ``tls`` the nodes also speak TLS, to each other too, and name their
    TLS ports to clients that came over TLS (Redis 7).
    """

    def __init__(self, root: Path, size: int = 3, tls: RedisTls | None = None) -> None:
        self.root = root
        self.tls = tls
        self.nodes: list[Node] = []
        for _ in range(size):
            self.nodes.append(self._node())

    def _node(self) -> Node:
        return Node(
            self.root,
            f"node{len(self.nodes)}",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--cluster-port",
            str(free_port()),
            "--repl-diskless-sync-delay",
            "0",
            tls=self.tls,
        )

    def start(self) -> Cluster:
        if REDIS_CLI is None:
            msg = "redis-cli is not installed (it comes with redis-server: make test-deps)"
            raise RuntimeError(msg)
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_up()
        tls = ("--tls", "--cacert", str(self.tls.ca)) if self.tls is not None else ()
        subprocess.run(
            [
                REDIS_CLI,
                *tls,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.client_port}" for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok(self.nodes)
        return self

    def add_replica(self, primary: Node) -> Node:
        """Start one more node and make it ``primary``'s replica."""
        assert REDIS_CLI is not None
        replica = self._node().start().wait_up()
        self.nodes.append(replica)
        as_replica = ["--cluster-slave", "--cluster-master-id", primary.client().cluster("MYID")]
        subprocess.run(
            [REDIS_CLI, "--cluster", "add-node", replica.address, primary.address, *as_replica],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up", "replication", 15)
        self.wait_ok(self.nodes)
        return replica

    @staticmethod
    def wait_ok(nodes: Iterable[Node], timeout: float = 15.0) -> float:
        def ok() -> bool:
            for node in nodes:
                info = node.client().cluster("INFO")
                if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return False
            return True

        return wait_until(ok, "cluster_state:ok on every node", timeout)

    def primaries(self) -> list[Node]:
        return [node for node in self.nodes if node.client().role()[0] == "master"]

    def client(self) -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=2)

    def url(self) -> str:
        # Two of the three nodes: the client discovers the rest.
        if self.tls is None:
            return "redis+cluster://" + ",".join(node.address for node in self.nodes[:2])
        hosts = ",".join(f"127.0.0.1:{node.client_port}" for node in self.nodes[:2])
        return f"rediss+cluster://{hosts}?ssl_ca_certs={self.tls.ca}"

    def close(self) -> None:
        for node in self.nodes:
            node.kill()


def verdict(stub: pb_grpc.SessionValidatorStub, session: MintedSession, cookie_name: str = "connect.sid") -> str:
    """The verdict's name (``VERDICT_VALID``…), or the status code's (``UNAVAILABLE``…) when the call fails."""
    request = pb.ValidateSessionRequest(cookie_header_text=session.cookie_header(cookie_name))
    try:
        return pb.Verdict.Name(stub.ValidateSession(request, timeout=3).verdict)
    except grpc.RpcError as exc:
        return str(exc.code().name)


def batch_verdicts(
    stub: pb_grpc.SessionValidatorStub, sessions: list[MintedSession], cookie_name: str = "connect.sid"
) -> list[str] | str:
    """The verdicts of one ValidateSessions call, or the status code's name when it fails."""
    requests = [pb.ValidateSessionRequest(cookie_header_text=s.cookie_header(cookie_name)) for s in sessions]
    try:
        response = stub.ValidateSessions(pb.ValidateSessionsRequest(requests=requests), timeout=3)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return [pb.Verdict.Name(r.verdict) for r in response.responses]


def readiness(address: str) -> str:
    """The readiness service's status name (``SERVING``, ``NOT_SERVING``)."""
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=pb.DESCRIPTOR.services_by_name["SessionValidator"].full_name)
        status = health_pb2_grpc.HealthStub(channel).Check(request, timeout=3).status
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))
