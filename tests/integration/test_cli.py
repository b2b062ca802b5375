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


def test_mint_without_a_store_says_which_store_and_what_to_set() -> None:
    port = free_port()
    env = {
        "SESSIONVALIDATOR_SECRETS": "k",
        "SESSIONVALIDATOR_ALLOW_WEAK_SECRETS": "1",
        "SESSIONVALIDATOR_REDIS_URL": f"redis://ann:hunter2-secret@127.0.0.1:{port}/0",
    }
    result = cli("mint", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"the session store at redis://ann:***@127.0.0.1:{port}/0" in result.stderr
    assert "SESSIONVALIDATOR_STORE_URL" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Error" not in result.stderr  # the cause, not an exception class


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
    assert f"the service at {down.address} cannot reach its session store" in result.stderr


def test_mint_and_check_reach_the_store_and_service_of_an_env_file(seeded: ValidatorProcess, tmp_path: Path) -> None:
    """What `make run` writes to .tmp/run.env: a terminal without any variable reaches the same store and service."""
    secret = tmp_path / "dev-secret"
    secret.write_text(json.loads(CORPUS["settings"]["SESSIONVALIDATOR_SECRETS"])[0] + "\n")
    env_file = tmp_path / "run.env"
    env_file.write_text(
        "# as scripts/run.sh writes it\n"
        f"SESSIONVALIDATOR_STORE_URL={seeded.env['SESSIONVALIDATOR_REDIS_URL']}\n"
        f"SESSIONVALIDATOR_LISTEN={seeded.address}\n"
        f"SESSIONVALIDATOR_SECRETS_FILE={secret}\n"
    )
    bare = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONVALIDATOR_")}

    def run(*args: str, env: dict[str, str] = bare) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sessionvalidator_service", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    minted = run("mint", "--env-file", str(env_file), "--user", '"7"')
    assert minted.returncode == 0, minted.stderr
    checked = run("check", "--env-file", str(env_file), "--cookie", minted.stdout.strip())
    assert checked.returncode == 0, checked
    assert json.loads(checked.stdout)["user"]["id"] == "7"
    assert run("healthcheck", "--env-file", str(env_file)).returncode == 0
    # The environment wins over the file: a store that is not there is named, with the fix.
    elsewhere = f"redis://127.0.0.1:{free_port()}/0"
    failed = run("mint", "--env-file", str(env_file), env={**bare, "SESSIONVALIDATOR_REDIS_URL": elsewhere})
    assert failed.returncode == 1
    assert f"the session store at {elsewhere}:" in failed.stderr
    # Without the file or a secret, mint says what is missing and where it may come from.
    missing = run("mint")
    assert missing.returncode == 2
    assert "SESSIONVALIDATOR_SECRETS" in missing.stderr
    assert "--env-file" in missing.stderr
