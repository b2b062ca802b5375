"""``--env-file``: the lines it reads, and the environment's precedence over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessionvalidator_service.cli import read_env_file, with_env_file


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "run.env"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_reads_name_value_lines_and_keeps_only_ours(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# a comment\n"
        "\n"
        "SESSIONVALIDATOR_STORE_URL=redis://127.0.0.1:6380/0?a=b&c=d\n"
        "export SESSIONVALIDATOR_LISTEN=127.0.0.1:50052\n"
        "SESSIONVALIDATOR_COOKIE_NAME='app.sid'\n"
        'SESSIONVALIDATOR_KEY_PREFIX="my:"\n'
        "SESSIONVALIDATOR_MONGO_COLLECTION=a=b\n"
        "PATH=/nowhere\n",
    )
    assert read_env_file(path) == {
        "SESSIONVALIDATOR_STORE_URL": "redis://127.0.0.1:6380/0?a=b&c=d",
        "SESSIONVALIDATOR_LISTEN": "127.0.0.1:50052",
        "SESSIONVALIDATOR_COOKIE_NAME": "app.sid",
        "SESSIONVALIDATOR_KEY_PREFIX": "my:",
        "SESSIONVALIDATOR_MONGO_COLLECTION": "a=b",
    }


def test_a_bad_line_is_named_without_its_value(tmp_path: Path) -> None:
    path = write(tmp_path, "SESSIONVALIDATOR_LISTEN=127.0.0.1:1\nhunter2-secret-text\n")
    with pytest.raises(ValueError, match=r"line 2: not NAME=VALUE") as caught:
        read_env_file(path)
    assert "hunter2" not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read .*nope\.env: No such file"):
        read_env_file(str(tmp_path / "nope.env"))


def test_the_environment_wins_and_alternatives_count_as_set(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "SESSIONVALIDATOR_STORE_URL=redis://127.0.0.1:6380/0\n"
        "SESSIONVALIDATOR_SECRETS_FILE=/from/the/file\n"
        "SESSIONVALIDATOR_LISTEN=127.0.0.1:50052\n"
        "SESSIONVALIDATOR_COOKIE_NAME=app.sid\n",
    )
    env = {
        "SESSIONVALIDATOR_REDIS_URL": "redis://10.0.0.1:6379/0",  # the older name of STORE_URL
        "SESSIONVALIDATOR_SECRETS": "from the environment",  # exclusive with SECRETS_FILE
        "SESSIONVALIDATOR_LISTEN": "",  # empty is unset, as for every setting
        "HOME": "/root",
    }
    assert with_env_file(env, path) == {
        "SESSIONVALIDATOR_REDIS_URL": "redis://10.0.0.1:6379/0",
        "SESSIONVALIDATOR_SECRETS": "from the environment",
        "SESSIONVALIDATOR_LISTEN": "127.0.0.1:50052",
        "SESSIONVALIDATOR_COOKIE_NAME": "app.sid",
        "HOME": "/root",
    }
    assert with_env_file(env, None) is env
