"""The gateway examples that no test runs live: Traefik and Istio, checked for shape.

Parsed, with the fields as their documentation names them, and consistent
with the service (the endpoint path, the header names). Not a substitute for
a live Traefik or Istio; the README says so. Envoy's example is also checked
by Envoy's own ``--mode validate``.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import yaml

from sessionvalidator_service.gateway import DEFAULT_HEADER_PREFIX, HeaderNames
from sessionvalidator_service.http_auth import AUTH_PATH
from tests.gateways.support import DEPLOY, ENVOY_BIN

NAMES = HeaderNames.with_prefix(DEFAULT_HEADER_PREFIX).all
# Traefik's ForwardAuth options (doc.traefik.io, middlewares/http/forwardauth).
TRAEFIK_FORWARD_AUTH = {
    "address",
    "tls",
    "trustForwardHeader",
    "authResponseHeaders",
    "authResponseHeadersRegex",
    "authRequestHeaders",
    "addAuthCookiesToResponse",
    "headerField",
    "forwardBody",
    "maxBodySize",
    "preserveLocationHeader",
    "preserveRequestMethod",
}
TRAEFIK_ROUTER = {"rule", "entryPoints", "middlewares", "service", "priority", "tls", "ruleSyntax", "observability"}
# Istio MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider.
ISTIO_GRPC_PROVIDER = {
    "service",
    "port",
    "timeout",
    "failOpen",
    "clearRouteCache",
    "statusOnError",
    "includeRequestBodyInCheck",
}


def load(*parts: str) -> Any:
    return yaml.safe_load((DEPLOY.joinpath(*parts)).read_text())


def separator_spellings(name: str) -> set[str]:
    """``name`` with '-' or '_' at each separator (Go folds case, so these are all the names a client can send)."""
    spellings = {""}
    for part in name.split("-"):
        spellings = {f"{s}{sep}{part}" for s in spellings for sep in (("-", "_") if s else ("",))}
    return spellings


def lower(names: list[str]) -> set[str]:
    return {name.lower() for name in names}


def test_traefik_forward_auth_asks_the_endpoint_and_copies_every_user_header() -> None:
    http = load("traefik", "dynamic.yaml")["http"]
    auth = http["middlewares"]["sessionvalidator"]["forwardAuth"]
    assert set(auth) <= TRAEFIK_FORWARD_AUTH
    assert auth["address"].startswith("http://")
    assert auth["address"].endswith(AUTH_PATH)
    assert auth["trustForwardHeader"] is False
    # Traefik deletes every client header the pattern matches (case-insensitively), then copies the validator's.
    pattern = re.compile(auth["authResponseHeadersRegex"], re.IGNORECASE)
    for name in NAMES:
        for spelling in (name, name.upper(), name.replace("-", "_"), name.replace("-", "_", 1).title()):
            assert pattern.search(spelling), spelling
    assert not pattern.search("x-sessions")
    assert not pattern.search("cookie")
    # Public routes: Traefik deletes exact (Go-canonical) names only, so every '-'/'_' spelling is listed.
    strip = http["middlewares"]["strip-session-headers"]["headers"]["customRequestHeaders"]
    assert set(strip.values()) == {""}
    assert {name.lower() for name in strip} == {spelling for name in NAMES for spelling in separator_spellings(name)}
    assert http["middlewares"]["drop-connection-header"]["headers"]["customRequestHeaders"] == {"Connection": ""}
    for name, router in http["routers"].items():
        assert set(router) <= TRAEFIK_ROUTER, name
        assert router["service"] in http["services"], name
        assert all(m in http["middlewares"] for m in router["middlewares"]), name
        assert router["rule"].startswith("PathPrefix(`"), name
    # Every non-public router is checked; the public one strips client headers.
    assert http["routers"]["app"]["middlewares"] == ["drop-connection-header", "sessionvalidator"]
    assert http["routers"]["app-public"]["middlewares"] == ["drop-connection-header", "strip-session-headers"]
    servers = http["services"]["app"]["loadBalancer"]["servers"]
    assert all(server["url"].startswith("http://") for server in servers)


def test_istio_provider_and_policy_fail_closed_with_503() -> None:
    operator = load("istio", "extension-provider.yaml")
    assert operator["apiVersion"] == "install.istio.io/v1alpha1"
    assert operator["kind"] == "IstioOperator"
    (provider,) = operator["spec"]["meshConfig"]["extensionProviders"]
    grpc = provider["envoyExtAuthzGrpc"]
    assert set(grpc) <= ISTIO_GRPC_PROVIDER
    assert grpc["service"].endswith(".svc.cluster.local")
    assert isinstance(grpc["port"], int)
    assert grpc["failOpen"] is False
    assert grpc["statusOnError"] == "503"
    policy = load("istio", "authorization-policy.yaml")
    assert policy["apiVersion"] == "security.istio.io/v1"
    assert policy["kind"] == "AuthorizationPolicy"
    assert policy["spec"]["action"] == "CUSTOM"
    assert policy["spec"]["provider"]["name"] == provider["name"]
    (rule,) = policy["spec"]["rules"]
    (target,) = rule["to"]
    assert target["operation"]["notPaths"] == ["/public/*"]


def test_envoy_accepts_its_example() -> None:
    config = load("envoy", "envoy.yaml")
    (listener,) = config["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    authz = manager["http_filters"][0]["typed_config"]
    assert authz["encode_raw_headers"] is True
    assert authz["failure_mode_allow"] is False
    assert authz["status_on_error"] == {"code": "ServiceUnavailable"}
    public = manager["route_config"]["virtual_hosts"][0]["routes"][0]
    assert lower(public["request_headers_to_remove"]) == set(NAMES)
    for name in ("envoy.yaml", "envoy-http.yaml"):
        result = subprocess.run(
            [str(ENVOY_BIN), "--mode", "validate", "-c", str(DEPLOY / "envoy" / name)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
