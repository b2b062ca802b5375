"""The command line against the real service: mint, check and healthcheck exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import CORPUS
from tests.support.processes import RedisServer, ValidatorProcess, free_port


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionvalidator_service", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_exit_status_follows_the_verdict(seeded: ValidatorProcess) -> None:
    expected_status = {
        "VERDICT_VALID": 0,
        "VERDICT_BAD_SIGNATURE": 4,
        "VERDICT_MALFORMED": 5,
        "VERDICT_EXPIRED": 6,
        "VERDICT_MISSING": 7,
    }
    seen = set()
    for case in CORPUS["cases"]:
        header = case["request"].get("cookie_header_text")
        if header is None or not header or case["expect"]["verdict"] in seen:
            continue
        seen.add(case["expect"]["verdict"])
        result = cli("check", "--address", seeded.address, "--cookie", header)
        assert result.returncode == expected_status[case["expect"]["verdict"]], result
        assert json.loads(result.stdout)["verdict"] == case["expect"]["verdict"]
    assert seen == set(expected_status)


def test_check_reports_a_failed_call_with_status_3() -> None:
    result = cli("check", "--address", f"127.0.0.1:{free_port()}", "--cookie", "a=b", "--timeout", "0.5")
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"] in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


def test_healthcheck(seeded: ValidatorProcess) -> None:
    assert cli("healthcheck", "--address", seeded.address).returncode == 0
    assert cli("healthcheck", "--address", seeded.address, "--service", "").returncode == 0
    assert cli("healthcheck", "--address", seeded.address, "--service", "nope").returncode == 1
    assert cli("healthcheck", "--address", f"127.0.0.1:{free_port()}", "--timeout", "0.5").returncode == 1


def test_mint_writes_what_connect_redis_writes(redis_server: RedisServer) -> None:
    env = {
        "SESSIONVALIDATOR_SECRETS": "keyboard cat",  # the official vector's secret, accepted on purpose
        "SESSIONVALIDATOR_ALLOW_WEAK_SECRETS": "1",
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
    }
    result = cli("mint", "--user", '{"id": 5}', "--max-age", "60", "--sid", "apple", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "connect.sid=s%3Aapple.D8Y%2BpkTAmeR0PobOhY4G97PRW%2Bj7bUnP%2F5m6%2FOn1MCU\n"
    client = redis_server.client()
    raw = client.get("sess:apple")
    assert raw is not None
    stored = json.loads(raw)
    assert stored["passport"] == {"user": {"id": 5}}
    assert stored["cookie"]["originalMaxAge"] == 60000
    assert 58 <= client.ttl("sess:apple") <= 60
    many = cli("mint", "--count", "3", "--anonymous", "--json", env=env)
    assert many.returncode == 0
    assert len({json.loads(line)["session_id"] for line in many.stdout.splitlines()}) == 3


def test_mint_without_a_store_fails_cleanly() -> None:
    env = {
        "SESSIONVALIDATOR_SECRETS": "k",
        "SESSIONVALIDATOR_ALLOW_WEAK_SECRETS": "1",
        "SESSIONVALIDATOR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    result = cli("mint", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_check_prints_the_error_reason() -> None:
    down = ValidatorProcess(
        {**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    ).start()
    try:
        # A signed cookie needs the store, which is down: UNAVAILABLE with its ErrorInfo reason.
        signed = next(c for c in CORPUS["cases"] if c["name"] == "valid_scalar_user")["request"]["cookie_header_text"]
        result = cli("check", "--address", down.address, "--cookie", signed, "--timeout", "2")
    finally:
        down.close()
    assert result.returncode == 3, result
    assert json.loads(result.stdout)["reason"] == "STORE_UNAVAILABLE"


def test_mint_finds_make_runs_dev_secret(redis_server: RedisServer, tmp_path: Path) -> None:
    """After `make run`, `sessionvalidator mint` works from the checkout with no variable set."""
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "dev-secret").write_text("a development secret of some length, 0123456789\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONVALIDATOR_")}
    env["SESSIONVALIDATOR_REDIS_URL"] = redis_server.url
    result = subprocess.run(
        [sys.executable, "-m", "sessionvalidator_service", "mint", "--user", '"7"'],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "development secret" in result.stderr
    assert result.stdout.startswith("connect.sid=s%3A")
    # Elsewhere, with no secret and no dev secret, it still says what is missing.
    result = subprocess.run(
        [sys.executable, "-m", "sessionvalidator_service", "mint"],
        env=env,
        cwd=tmp_path / ".tmp",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "SESSIONVALIDATOR_SECRETS" in result.stderr
