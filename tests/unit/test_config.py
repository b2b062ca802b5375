"""Configuration: defaults, every variable, and one clear line for each mistake."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from sessionvalidator_service.config import ConfigError, Settings, redact_url
from sessionvalidator_service.serverkind import resolve

BASE = {"SESSIONVALIDATOR_SECRETS": "a-secret-that-is-long-enough-000000"}


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.secrets == ("a-secret-that-is-long-enough-000000",)
    assert settings.store_url == "redis://127.0.0.1:6379/0"
    assert settings.cookie_name == "connect.sid"
    assert settings.key_prefix == "sess:"
    assert settings.listen == "[::]:50051"
    assert settings.user_key is None
    assert settings.store_timeout_s == pytest.approx(0.1)
    assert settings.shutdown_grace_s == pytest.approx(10.0)
    assert settings.log_level == logging.INFO


def test_every_variable() -> None:
    settings = Settings.from_env(
        {
            "SESSIONVALIDATOR_SECRETS": '["new", "old"]',
            "SESSIONVALIDATOR_ALLOW_WEAK_SECRETS": "1",
            "SESSIONVALIDATOR_REDIS_URL": "unix:///run/redis.sock?db=2",
            "SESSIONVALIDATOR_COOKIE_NAME": "sid",
            "SESSIONVALIDATOR_KEY_PREFIX": "",
            "SESSIONVALIDATOR_LISTEN": "127.0.0.1:0",
            "SESSIONVALIDATOR_USER_KEY": "user:{id}",
            "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "250",
            "SESSIONVALIDATOR_SHUTDOWN_GRACE_S": "2.5",
            "SESSIONVALIDATOR_LOG_LEVEL": "debug",
        }
    )
    assert settings.secrets == ("new", "old")
    assert settings.store_url == "unix:///run/redis.sock?db=2"
    assert settings.cookie_name == "sid"
    assert settings.key_prefix == ""  # connect-redis honours an empty prefix
    assert settings.listen == "127.0.0.1:0"
    assert settings.user_key == "user:{id}"
    assert settings.store_timeout_s == pytest.approx(0.25)
    assert settings.shutdown_grace_s == pytest.approx(2.5)
    assert settings.log_level == logging.DEBUG


def test_secrets_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text("current\r\n\nprevious\n", encoding="utf-8")
    env = {"SESSIONVALIDATOR_SECRETS_FILE": str(path), "SESSIONVALIDATOR_ALLOW_WEAK_SECRETS": "true"}
    assert Settings.from_env(env).secrets == ("current", "previous")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "SESSIONVALIDATOR_SECRETS"),
        ({"SESSIONVALIDATOR_SECRETS": "[]"}, "SESSIONVALIDATOR_SECRETS"),
        ({"SESSIONVALIDATOR_SECRETS": '["ok", ""]'}, "SESSIONVALIDATOR_SECRETS"),
        ({"SESSIONVALIDATOR_SECRETS": "[not json"}, "SESSIONVALIDATOR_SECRETS"),
        ({**BASE, "SESSIONVALIDATOR_SECRETS_FILE": "/x"}, "SESSIONVALIDATOR_SECRETS_FILE"),
        ({"SESSIONVALIDATOR_SECRETS_FILE": "/nonexistent/secrets"}, "SESSIONVALIDATOR_SECRETS_FILE"),
        ({**BASE, "SESSIONVALIDATOR_REDIS_URL": "http://x"}, "SESSIONVALIDATOR_REDIS_URL"),
        ({**BASE, "SESSIONVALIDATOR_COOKIE_NAME": "bad name"}, "SESSIONVALIDATOR_COOKIE_NAME"),
        ({**BASE, "SESSIONVALIDATOR_LISTEN": "50051"}, "SESSIONVALIDATOR_LISTEN"),
        ({**BASE, "SESSIONVALIDATOR_LISTEN": "[::]:99999"}, "SESSIONVALIDATOR_LISTEN"),
        ({**BASE, "SESSIONVALIDATOR_USER_KEY": "user:"}, "SESSIONVALIDATOR_USER_KEY"),
        ({**BASE, "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "0"}, "SESSIONVALIDATOR_STORE_TIMEOUT_MS"),
        ({**BASE, "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "fast"}, "SESSIONVALIDATOR_STORE_TIMEOUT_MS"),
        ({**BASE, "SESSIONVALIDATOR_SHUTDOWN_GRACE_S": "-1"}, "SESSIONVALIDATOR_SHUTDOWN_GRACE_S"),
        ({**BASE, "SESSIONVALIDATOR_LOG_LEVEL": "loud"}, "SESSIONVALIDATOR_LOG_LEVEL"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable + ": ")


def test_repr_hides_secrets_and_passwords() -> None:
    settings = Settings.from_env({**BASE, "SESSIONVALIDATOR_REDIS_URL": "redis://user:hunter2@db:6379/0"})
    text = repr(settings)
    assert "a-secret-that-is-long-enough" not in text
    assert "hunter2" not in text
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    sentinel = "redis+sentinel://u:pw@s1:26379,s2:26379/main?sentinel_password=spw&ssl_certfile=/c"
    assert redact_url(sentinel) == "redis+sentinel://u:***@s1:26379,s2:26379/main?sentinel_password=***&ssl_certfile=/c"
    assert redact_url("redis://h:1/0?password=pw") == "redis://h:1/0?password=***"


def test_serve_with_bad_config_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sessionvalidator_service", "serve"],
        env={
            "SESSIONVALIDATOR_SECRETS": BASE["SESSIONVALIDATOR_SECRETS"],
            "SESSIONVALIDATOR_LISTEN": "nope",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SESSIONVALIDATOR_LISTEN" in lines[0]
    assert "Traceback" not in result.stderr


def test_workers() -> None:
    assert Settings.from_env(BASE).workers == 1
    assert (
        Settings.from_env({**BASE, "SESSIONVALIDATOR_WORKERS": "2", "SESSIONVALIDATOR_LISTEN": "[::]:50051"}).workers
        == 2
    )
    assert Settings.from_env({**BASE, "SESSIONVALIDATOR_WORKERS": "auto"}).workers >= 1
    for bad in ("0", "65", "two", "-1"):
        with pytest.raises(ConfigError, match="SESSIONVALIDATOR_WORKERS"):
            Settings.from_env({**BASE, "SESSIONVALIDATOR_WORKERS": bad})
    with pytest.raises(ConfigError, match="fixed port"):
        Settings.from_env({**BASE, "SESSIONVALIDATOR_WORKERS": "2", "SESSIONVALIDATOR_LISTEN": "127.0.0.1:0"})


STRONG = "Zt3qV9xL0pWc8rYb2NfKs7HdJ4mQa6Ue"  # 32 bytes, random-looking


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("keyboard cat", "published sample"),
        ("  Keyboard Cat ", "published sample"),
        ("short-but-random-7f3a", "shorter than 32 bytes"),
        ("ab" * 20, "fewer than 8 distinct characters"),
        ("replace-with-the-express-session-secret", "published sample"),
    ],
)
def test_weak_secrets_are_refused_with_the_reason(secret: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SESSIONVALIDATOR_SECRETS": json.dumps([STRONG, secret])})
    assert caught.value.variable == "SESSIONVALIDATOR_SECRETS"
    assert "secret #2" in str(caught.value)
    assert problem in str(caught.value)
    assert "SESSIONVALIDATOR_ALLOW_WEAK_SECRETS" in str(caught.value)
    assert secret.strip() not in str(caught.value)  # the message never echoes the secret
    allowed = Settings.from_env(
        {"SESSIONVALIDATOR_SECRETS": json.dumps([STRONG, secret]), "SESSIONVALIDATOR_ALLOW_WEAK_SECRETS": "yes"}
    )
    assert allowed.secrets == (STRONG, secret)


def test_weak_secret_in_a_file_names_the_file_variable(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text("keyboard cat\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SESSIONVALIDATOR_SECRETS_FILE": str(path)})
    assert caught.value.variable == "SESSIONVALIDATOR_SECRETS_FILE"
    assert Settings.from_env({"SESSIONVALIDATOR_SECRETS": STRONG}).secrets == (STRONG,)
    with pytest.raises(ConfigError, match="ALLOW_WEAK_SECRETS"):
        Settings.from_env({"SESSIONVALIDATOR_SECRETS": STRONG, "SESSIONVALIDATOR_ALLOW_WEAK_SECRETS": "maybe"})


def test_tls_settings(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / name for name in ("c.pem", "k.pem", "ca.pem"))
    for path in (cert, key, ca):
        path.write_text("x", encoding="ascii")
    assert Settings.from_env(BASE).tls is None
    tls = Settings.from_env(
        {
            **BASE,
            "SESSIONVALIDATOR_TLS_CERT_FILE": str(cert),
            "SESSIONVALIDATOR_TLS_KEY_FILE": str(key),
            "SESSIONVALIDATOR_TLS_CLIENT_CA_FILE": str(ca),
        }
    ).tls
    assert tls is not None
    assert tls.client_ca == ca
    for env, variable in [
        ({"SESSIONVALIDATOR_TLS_CERT_FILE": str(cert)}, "SESSIONVALIDATOR_TLS_KEY_FILE"),
        ({"SESSIONVALIDATOR_TLS_KEY_FILE": str(key)}, "SESSIONVALIDATOR_TLS_CERT_FILE"),
        ({"SESSIONVALIDATOR_TLS_CLIENT_CA_FILE": str(ca)}, "SESSIONVALIDATOR_TLS_CLIENT_CA_FILE"),
        (
            {"SESSIONVALIDATOR_TLS_CERT_FILE": str(cert), "SESSIONVALIDATOR_TLS_KEY_FILE": "/nonexistent"},
            "SESSIONVALIDATOR_TLS_KEY_FILE",
        ),
    ]:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**BASE, **env})
        assert caught.value.variable == variable


def test_server_kind(tmp_path: Path) -> None:
    assert Settings.from_env(BASE).server == "grpcio"
    assert Settings.from_env({**BASE, "SESSIONVALIDATOR_SERVER": "native"}).server == "native"
    assert Settings.from_env({**BASE, "SESSIONVALIDATOR_SERVER": " Auto "}).server == "auto"
    with pytest.raises(ConfigError, match="grpcio, native or auto"):
        Settings.from_env({**BASE, "SESSIONVALIDATOR_SERVER": "fast"})
    (tmp_path / "c.pem").write_text("x", encoding="ascii")
    tls = {
        "SESSIONVALIDATOR_TLS_CERT_FILE": str(tmp_path / "c.pem"),
        "SESSIONVALIDATOR_TLS_KEY_FILE": str(tmp_path / "c.pem"),
    }
    with pytest.raises(ConfigError, match="no TLS"):
        Settings.from_env({**BASE, "SESSIONVALIDATOR_SERVER": "native", **tls})
    assert Settings.from_env({**BASE, "SESSIONVALIDATOR_SERVER": "auto", **tls}).server == "auto"


def test_auto_serves_native_unless_tls_or_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [(kind.name, why) for kind, why in (resolve("auto", tls=False), resolve("auto", tls=True))] == [
        ("native", "auto_no_tls"),
        ("grpcio", "auto_tls"),
    ]
    assert [resolve(name, tls=False)[0].name for name in ("grpcio", "native")] == ["grpcio", "native"]
    assert resolve("grpcio", tls=True)[1] == "configured"
    monkeypatch.setitem(sys.modules, "pygrpc_native.aio", None)  # an import of it raises ImportError
    kind, why = resolve("auto", tls=False)
    assert (kind.name, why) == ("grpcio", "auto_native_not_installed")


def test_shutdown_delay() -> None:
    assert Settings.from_env(BASE).shutdown_delay_s == 3.0
    assert Settings.from_env({**BASE, "SESSIONVALIDATOR_SHUTDOWN_DELAY_MS": "0"}).shutdown_delay_s == 0.0
    assert Settings.from_env({**BASE, "SESSIONVALIDATOR_SHUTDOWN_DELAY_MS": "250"}).shutdown_delay_s == 0.25
    for bad in ("-1", "1.5", "soon"):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**BASE, "SESSIONVALIDATOR_SHUTDOWN_DELAY_MS": bad})
        assert caught.value.variable == "SESSIONVALIDATOR_SHUTDOWN_DELAY_MS"
