"""Hot-path counts are plain numbers added to the Prometheus metrics when read: exact, never twice."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from sessionvalidator_service.domain import Reason
from sessionvalidator_service.metrics import Metrics


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_counts_are_read_exactly_and_each_once() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for _ in range(5):
        metrics.judged(Reason.SESSION_ACTIVE, 0)
    metrics.judged(Reason.SESSION_ACTIVE, 1)
    metrics.gateway_decision("http", "allow", "VALID")
    labels = {"verdict": "VALID", "reason": "session_active"}
    assert sample(registry, "sessionvalidator_validations_total", **labels) == 6
    assert sample(registry, "sessionvalidator_validations_total", **labels) == 6  # a second read adds nothing
    assert sample(registry, "sessionvalidator_secret_verifications_total", index="1") == 1
    metrics.judged(Reason.SESSION_ACTIVE, 0)
    assert sample(registry, "sessionvalidator_validations_total", **labels) == 7
    assert sample(registry, "sessionvalidator_secret_verifications_total", index="0") == 6
    assert (
        sample(registry, "sessionvalidator_gateway_decisions_total", front="http", decision="allow", label="VALID") == 1
    )


def test_latency_lands_in_the_buckets_prometheus_would_use() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for seconds in (0.0001, 0.0005, 0.0006, 0.003, 7.0):
        metrics.observe_single(seconds)
    with metrics.timed("Check"):
        pass

    def bucket(le: str, method: str = "ValidateSession") -> float:
        return sample(registry, "sessionvalidator_request_duration_seconds_bucket", method=method, le=le)

    assert bucket("0.0005") == 2  # le is inclusive
    assert bucket("0.001") == 3
    assert bucket("0.005") == 4
    assert bucket("2.5") == 4
    assert bucket("+Inf") == 5
    assert sample(registry, "sessionvalidator_request_duration_seconds_count", method="ValidateSession") == 5
    total = sample(registry, "sessionvalidator_request_duration_seconds_sum", method="ValidateSession")
    assert abs(total - 7.0042) < 1e-9
    assert bucket("+Inf", "Check") == 1


def test_concurrent_reads_while_counting_lose_nothing() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            registry.get_sample_value(
                "sessionvalidator_validations_total", {"verdict": "VALID", "reason": "session_active"}
            )

    scrapers = [threading.Thread(target=scrape) for _ in range(2)]
    for thread in scrapers:
        thread.start()
    for _ in range(20_000):
        metrics.judged(Reason.SESSION_ACTIVE, None)
    stop.set()
    for thread in scrapers:
        thread.join()
    labels = {"verdict": "VALID", "reason": "session_active"}
    assert sample(registry, "sessionvalidator_validations_total", **labels) == 20_000
