"""Kubernetes manifests and the Helm chart, validated offline.

Every object is checked against the Kubernetes OpenAPI schemas that
kubernetes-validate ships (strict: unknown fields fail), for the current release
and the oldest the chart supports. Then what schemas cannot see: the probes ask
the readiness service of the proto on the port the container listens on, the
Pod Security Standards "restricted" profile holds, the secrets file named by
SESSIONVALIDATOR_SECRETS_FILE is where a Secret is mounted, the store URL comes
from a Secret, and Services, PodDisruptionBudgets, autoscalers and
ServiceMonitors point at what exists. `make test-manifests` builds the pinned
Helm and runs this.
"""

from __future__ import annotations

import copy
import os
import posixpath
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sessionvalidator"
MANIFEST = ROOT / "deploy" / "kubernetes" / "sessionvalidator.yaml"
HELM = os.environ.get("HELM", str(ROOT / ".tmp" / "bin" / "helm"))
# The current release, and the oldest the chart supports (native gRPC probes: 1.27).
KUBERNETES_VERSIONS = ["1.37.0", "1.27.0"]
# Not in the Kubernetes schemas: checked by check_service_monitor instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

Doc = dict[str, Any]


def proto_readiness_service() -> str:
    proto = next((ROOT / "proto").rglob("session_validator_service.proto")).read_text(encoding="utf-8")
    package = re.search(r"^package ([\w.]+);", proto, flags=re.MULTILINE)
    service = re.search(r"^service (\w+) \{", proto, flags=re.MULTILINE)
    assert package
    assert service
    return f"{package.group(1)}.{service.group(1)}"


def image_facts() -> tuple[int, int]:
    """The image's default gRPC port and its user id, from the Dockerfile."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    listen = re.search(r"SESSIONVALIDATOR_LISTEN=\S*:(\d+)", dockerfile)
    user = re.findall(r"^USER (\d+)", dockerfile, flags=re.MULTILINE)
    assert listen
    assert user
    return int(listen.group(1)), int(user[-1])


READINESS = proto_readiness_service()
IMAGE_PORT, IMAGE_UID = image_facts()


def load(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm(*args: str) -> str:
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def render(values: Path | None) -> list[Doc]:
    flags = ["--values", str(values)] if values else []
    return load(helm("template", "sv", str(CHART), "--namespace", "identity", *flags))


# ---------------------------------------------------------------- checks


def schema_valid(docs: list[Doc]) -> None:
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(part) for part in exc.path)
                msg = f"{doc['kind']}/{doc['metadata']['name']} against {version}: {path}: {exc.message}"
                raise AssertionError(msg) from None


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def env_of(container: Doc) -> dict[str, Doc]:
    return {item["name"]: item for item in container.get("env", [])}


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def check_restricted(pod: Doc) -> None:
    """The Pod Security Standards "restricted" profile (v1.27+), as the admission controller reads it."""
    for forbidden in ["hostNetwork", "hostPID", "hostIPC"]:
        assert not pod.get(forbidden), forbidden
    pod_context = pod.get("securityContext", {})
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
    allowed_volumes |= {"projected", "secret"}
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        assert kinds <= allowed_volumes, volume
    containers = pod["containers"] + pod.get("initContainers", [])
    for container in containers:
        context = container.get("securityContext", {})
        name = container["name"]
        assert context.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation must be false"
        assert not context.get("privileged"), name
        assert context.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities must drop ALL"
        assert set(context.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, name
        run_as_non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        assert run_as_non_root is True, f"{name}: runAsNonRoot must be true"
        assert context.get("runAsUser", pod_context.get("runAsUser")) != 0, name
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        assert seccomp.get("type") in {"RuntimeDefault", "Localhost"}, f"{name}: seccompProfile"
        for port in container.get("ports", []):
            assert "hostPort" not in port, name


def check_probes(container: Doc, listen_port: int) -> None:
    env = env_of(container)
    declared = {port["containerPort"] for port in container.get("ports", [])}
    for probe_name, service in [("livenessProbe", ""), ("readinessProbe", READINESS)]:
        probe = container[probe_name]
        if "grpc" in probe:
            assert probe["grpc"]["port"] == listen_port, f"{probe_name} asks port {probe['grpc']['port']}"
            assert probe["grpc"]["port"] in declared
            assert probe["grpc"].get("service", "") == service, f"{probe_name} names the wrong service"
            assert "SESSIONVALIDATOR_TLS_CERT_FILE" not in env, "native gRPC probes cannot speak TLS"
        else:
            command = probe["exec"]["command"]
            assert command[:2] == ["sessionvalidator", "healthcheck"], command
            assert command[command.index("--service") + 1] == service, f"{probe_name} names the wrong service"
            assert "--address" not in command, "the healthcheck dials SESSIONVALIDATOR_LISTEN"
            if "SESSIONVALIDATOR_TLS_CERT_FILE" in env:
                assert "SESSIONVALIDATOR_CHECK_TLS_CA" in env, "a TLS probe needs the CA"
            if "SESSIONVALIDATOR_TLS_CLIENT_CA_FILE" in env:
                assert {"SESSIONVALIDATOR_CHECK_TLS_CERT", "SESSIONVALIDATOR_CHECK_TLS_KEY"} <= set(env)
    assert container["readinessProbe"]["periodSeconds"] <= 5, "readiness should follow the store within seconds"


def check_files_are_mounted(pod: Doc, container: Doc, secrets: dict[str, Doc]) -> None:
    """Each *_FILE variable names a file that a Secret volume puts there, read-only."""
    env = env_of(container)
    mounts = {mount["mountPath"]: mount for mount in container.get("volumeMounts", [])}
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    files = {name: item["value"] for name, item in env.items() if name.endswith("_FILE") or "_CHECK_TLS_" in name}
    files = {name: value for name, value in files.items() if not name.endswith("SERVER_NAME")}
    assert "SESSIONVALIDATOR_SECRETS_FILE" in files
    assert "SESSIONVALIDATOR_SECRETS" not in env, "secrets belong in a mounted file, not a variable"
    for name, path in files.items():
        directory, filename = posixpath.split(path)
        assert directory in mounts, f"{name}={path}: nothing is mounted at {directory}"
        mount = mounts[directory]
        assert mount.get("readOnly") is True, directory
        assert "subPath" not in mount, "subPath mounts never see a rotated Secret"
        secret = volumes[mount["name"]]["secret"]
        items = secret.get("items")
        keys = {item["path"]: item["key"] for item in items} if items else None
        if keys is not None:
            assert filename in keys, f"{name}={path}: the volume has no item {filename}"
        key = keys[filename] if keys is not None else filename
        known = secrets.get(secret["secretName"])
        if known is not None:
            assert key in {**known.get("data", {}), **known.get("stringData", {})}, f"{name}: no key {key}"


def check_deployment(docs: list[Doc], deployment: Doc) -> None:
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    check_restricted(pod)
    assert pod.get("automountServiceAccountToken") is False
    (container,) = pod["containers"]
    env = env_of(container)
    listen_port = port_of(env["SESSIONVALIDATOR_LISTEN"]["value"]) if "SESSIONVALIDATOR_LISTEN" in env else IMAGE_PORT
    names = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert names["grpc"] == listen_port, "the grpc port is not the one the service listens on"
    for variable, port_name in [
        ("SESSIONVALIDATOR_METRICS_LISTEN", "metrics"),
        ("SESSIONVALIDATOR_HTTP_LISTEN", "http"),
    ]:
        if variable in env:
            assert names.get(port_name) == port_of(env[variable]["value"]), variable
        else:
            assert port_name not in names, f"{port_name} port declared but {variable} is unset"
    check_probes(container, listen_port)
    secrets = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "Secret")}
    check_files_are_mounted(pod, container, secrets)

    store = env.get("SESSIONVALIDATOR_STORE_URL")
    assert store is not None, "SESSIONVALIDATOR_STORE_URL is unset"
    assert "secretKeyRef" in store.get("valueFrom", {}), "the store URL carries credentials: read it from a Secret"
    reference = store["valueFrom"]["secretKeyRef"]
    if reference["name"] in secrets:
        known = secrets[reference["name"]]
        assert reference["key"] in {**known.get("data", {}), **known.get("stringData", {})}
    assert "SESSIONVALIDATOR_REDIS_URL" not in env, "use SESSIONVALIDATOR_STORE_URL"

    grace = int(env["SESSIONVALIDATOR_SHUTDOWN_GRACE_S"]["value"])
    assert pod["terminationGracePeriodSeconds"] > grace, "the kubelet would kill in-flight calls"
    user = container.get("securityContext", {}).get("runAsUser", pod["securityContext"].get("runAsUser"))
    assert user == IMAGE_UID
    assert container["securityContext"].get("readOnlyRootFilesystem") is True
    assert container["resources"]["requests"].get("cpu"), "an HPA on CPU needs a CPU request"

    for service in of_kind(docs, "Service"):
        assert service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in names if isinstance(target, str) else target in names.values(), port
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert "replicas" not in spec, "replicas fights the autoscaler"
    for constraint in pod.get("topologySpreadConstraints", []):
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()


def check_service_monitor(docs: list[Doc]) -> None:
    services = of_kind(docs, "Service")
    for monitor in of_kind(docs, "ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selected = [
            service
            for service in services
            if monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        ]
        assert selected, "the ServiceMonitor selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["path"] == "/metrics"
            for service in selected:
                assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}


def check_all(docs: list[Doc]) -> None:
    schema_valid(docs)
    deployments = of_kind(docs, "Deployment")
    assert len(deployments) == 1
    check_deployment(docs, deployments[0])
    check_service_monitor(docs)


# ---------------------------------------------------------------- the manifests


def test_the_kubernetes_manifest() -> None:
    docs = load(MANIFEST.read_text(encoding="utf-8"))
    assert {doc["kind"] for doc in docs} == {"Secret", "Deployment", "Service"}
    check_all(docs)


def test_the_chart_lints() -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), "--values", str(CHART / "ci" / "full-values.yaml"))


def test_the_chart_with_default_values() -> None:
    docs = render(None)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    check_all(docs)
    (deployment,) = of_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": READINESS}
    assert container["image"] == "sessionvalidator:0.1.0"


def test_the_chart_with_every_option() -> None:
    docs = render(CHART / "ci" / "full-values.yaml")
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    check_all(docs)
    (deployment,) = of_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert env["SESSIONVALIDATOR_HTTP_LISTEN"]["value"] == "[::]:8081"
    assert env["SESSIONVALIDATOR_TLS_CLIENT_CA_FILE"]["value"] == "/etc/sessionvalidator/tls/ca.crt"
    assert env["SESSIONVALIDATOR_STORE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "session-store",
        "key": "mongodb-url",
    }
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)


def helm_refuses(*settings: str) -> str:
    flags = [flag for setting in settings for flag in ("--set", setting)]
    result = subprocess.run(
        [HELM, "template", "sv", str(CHART), *flags], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0, f"helm rendered {settings}"
    return result.stderr


def test_the_chart_refuses_tls_without_a_secret() -> None:
    assert "tls.existingSecret is required" in helm_refuses("tls.enabled=true")


def test_the_values_schema_refuses_typos_and_secrets_in_values() -> None:
    assert "existingsecret" in helm_refuses("store.existingsecret=session-store")
    assert "/config" in helm_refuses("config.SESSIONVALIDATOR_SECRETS=keyboard-cat")
    assert "/config" in helm_refuses("config.SESSIONVALIDATOR_STORE_URL=redis://:password@redis")
    assert "/image/digest" in helm_refuses("image.digest=latest")


# ---------------------------------------------------------------- the checks can fail


def _container(docs: list[Doc]) -> Doc:
    return dict(of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0])


def _wrong_readiness_service(docs: list[Doc]) -> None:
    _container(docs)["readinessProbe"]["grpc"]["service"] = "sessionvalidator.v1.SessionValidatorService"


def _wrong_probe_port(docs: list[Doc]) -> None:
    _container(docs)["livenessProbe"]["grpc"]["port"] = 8080


def _privilege_escalation(docs: list[Doc]) -> None:
    _container(docs)["securityContext"]["allowPrivilegeEscalation"] = True


def _secrets_file_elsewhere(docs: list[Doc]) -> None:
    for item in _container(docs)["env"]:
        if item["name"] == "SESSIONVALIDATOR_SECRETS_FILE":
            item["value"] = "/etc/secrets/express"


def _unknown_field(docs: list[Doc]) -> None:
    _container(docs)["readinessProbe"]["grpcc"] = {}


def _store_url_in_plain_text(docs: list[Doc]) -> None:
    for item in _container(docs)["env"]:
        if item["name"] == "SESSIONVALIDATOR_STORE_URL":
            item.pop("valueFrom")
            item["value"] = "redis://:password@redis:6379/0"


@pytest.mark.parametrize(
    "breakage",
    [
        _wrong_readiness_service,
        _wrong_probe_port,
        _privilege_escalation,
        _secrets_file_elsewhere,
        _unknown_field,
        _store_url_in_plain_text,
    ],
)
def test_the_checks_catch_a_broken_manifest(breakage: Callable[[list[Doc]], None]) -> None:
    docs = copy.deepcopy(load(MANIFEST.read_text(encoding="utf-8")))
    check_all(copy.deepcopy(docs))
    breakage(docs)
    with pytest.raises(AssertionError):
        check_all(docs)
