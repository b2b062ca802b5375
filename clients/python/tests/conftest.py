"""Fixtures for the client tests: the live, seeded SessionValidator that tests/harness.py starts.

Run from the repository root:

    .venv/bin/python tests/harness.py -- .venv/bin/python -m pytest clients/python/tests

The harness sets SESSIONVALIDATOR_TEST_ADDR (the seeded service),
SESSIONVALIDATOR_TEST_DOWN_ADDR (a service whose store is down) and
SESSIONVALIDATOR_TEST_VECTORS (tests/vectors/validate_session.json). A test
that needs one of them fails, with this instruction, when it is missing.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ADDR = "SESSIONVALIDATOR_TEST_ADDR"
DOWN_ADDR = "SESSIONVALIDATOR_TEST_DOWN_ADDR"
VECTORS = "SESSIONVALIDATOR_TEST_VECTORS"

HOW_TO_RUN = (
    "{name} is not set. These tests need a live SessionValidator; run them through the harness, "
    "from the repository root:\n"
    "    .venv/bin/python tests/harness.py -- .venv/bin/python -m pytest clients/python/tests"
)

# Shown as the only case id when the vectors cannot be read at collection time.
NO_VECTORS = "vectors-not-set"


def required_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(HOW_TO_RUN.format(name=name), pytrace=False)
    return value


def _read_cases() -> list[dict[str, Any]] | None:
    path = os.environ.get(VECTORS)
    if not path:
        return None
    cases: list[dict[str, Any]] = json.loads(Path(path).read_text(encoding="utf-8"))["cases"]
    return cases


def _any_case(case: dict[str, Any]) -> bool:
    return True


def _sends_a_header(case: dict[str, Any]) -> bool:
    return "signed_value" not in case["request"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize tests taking ``case`` by every vector case, ``header_case`` by those that send a header."""
    for fixture, wanted in (("case", _any_case), ("header_case", _sends_a_header)):
        if fixture in metafunc.fixturenames:
            cases = _read_cases()
            names = [case["name"] for case in cases if wanted(case)] if cases is not None else [NO_VECTORS]
            metafunc.parametrize(fixture, names, indirect=True, ids=names)


@pytest.fixture(scope="session")
def addr() -> str:
    """host:port of the seeded service."""
    return required_env(ADDR)


@pytest.fixture(scope="session")
def down_addr() -> str:
    """host:port of a service whose session store is unreachable."""
    return required_env(DOWN_ADDR)


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    corpus: dict[str, Any] = json.loads(Path(required_env(VECTORS)).read_text(encoding="utf-8"))
    return corpus


@pytest.fixture(scope="session")
def cases_by_name(vectors: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {case["name"]: case for case in vectors["cases"]}


@pytest.fixture
def case(request: pytest.FixtureRequest, cases_by_name: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One vector case, by the name it was parametrized with."""
    return cases_by_name[request.param]


@pytest.fixture
def header_case(request: pytest.FixtureRequest, cases_by_name: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One vector case whose credential is a Cookie header (or nothing at all)."""
    return cases_by_name[request.param]


def header_bytes(case: dict[str, Any]) -> bytes:
    """The Cookie header of a header case, as the bytes a server would receive."""
    request = case["request"]
    if "cookie_header_b64" in request:
        return base64.b64decode(request["cookie_header_b64"])
    text: str = request["cookie_header_text"]
    return text.encode("latin-1")


@pytest.fixture(scope="session")
def valid_cookie(cases_by_name: dict[str, dict[str, Any]]) -> bytes:
    """A Cookie header for a live session with a logged-in user (id "u-100", username "ann")."""
    return header_bytes(cases_by_name["valid_object_user"])


@pytest.fixture(scope="session")
def anonymous_cookie(cases_by_name: dict[str, dict[str, Any]]) -> bytes:
    """A Cookie header for a live session without a logged-in user."""
    return header_bytes(cases_by_name["valid_anonymous_session"])


@pytest.fixture(scope="session")
def latin1_cookie(cases_by_name: dict[str, dict[str, Any]]) -> bytes:
    """A Cookie header whose session id is the single byte 0xE9 (latin-1 "é"), not valid UTF-8."""
    return header_bytes(cases_by_name["valid_latin1_byte_session_id"])


@pytest.fixture(scope="session")
def tampered_cookie(cases_by_name: dict[str, dict[str, Any]]) -> bytes:
    """A Cookie header whose signature does not verify."""
    return header_bytes(cases_by_name["bad_signature_tampered"])


@pytest.fixture
def silent_addr() -> Iterator[str]:
    """host:port of a TCP listener that accepts connections and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.fixture
def closed_addr() -> str:
    """host:port where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"
