"""The README quick starts, extracted and run as a newcomer would: a README that drifts fails here.

Each client README marks its quick-start blocks with an HTML comment
(``<!-- quickstart:NAME -->``) on the line before the code fence. This test
runs them in a scratch directory against a real service and a real Redis:

* ``<lang>-setup`` (shell): run as written in a scratch directory, with
  ``SV`` set to this checkout (the README tells the reader to set it to
  theirs); it makes the app's directory ``myapp``; the Node README's
  ``node-pack-setup`` (a packed tarball instead of a link to the clone) is
  run the same way, with the same app;
* ``<lang>-app`` (Go, JavaScript, Python): saved as ``main.go`` / ``app.js``
  / ``app.py``;
* ``<lang>-run`` (shell): started in the background, as written, with
  ``PORT`` set to a free port, which the app must serve on.

One literal is replaced, so that parallel runs do not collide: the
validator address ``localhost:50051`` becomes the test service's. Then the
app must answer a logged-in user's session with 200, and refuse an
anonymous session, a forged signature and no cookie with 401, and a Redis
outage with 503 and Retry-After.

The top README's quick start is run the same way: ``make run`` in the
background on a port and a store URL of its own (a Redis it starts, a
FerretDB it starts, a Redis already running), then the lines of
``top-try`` as written, in a "second terminal" that has none of those
variables.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ROOT, RedisServer, ValidatorProcess, free_port

SECRET = "quickstart: a signing secret comfortably over 32 bytes"  # noqa: S105 - a test secret
MARKER = re.compile(r"<!-- quickstart:([a-z0-9-]+) -->\s*\n```[a-z]*\n(.*?)\n```", re.DOTALL)
APP_FILES = {"go": "main.go", "node": "app.js", "python": "app.py"}
READMES = {
    "go": ROOT / "clients" / "go" / "README.md",
    "node": ROOT / "clients" / "node" / "README.md",
    "python": ROOT / "clients" / "python" / "README.md",
}


def blocks(readme: Path) -> dict[str, str]:
    """The marked code blocks of a README, by name."""
    found = dict(MARKER.findall(readme.read_text(encoding="utf-8")))
    assert found, f"{readme} has no <!-- quickstart:... --> blocks"
    return found


def env_without_ours() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SESSIONVALIDATOR_")}


def mint(redis_url: str, *args: str) -> str:
    """A Cookie header minted with the service's own CLI (as a newcomer would)."""
    result = subprocess.run(
        [sys.executable, "-m", "sessionvalidator_service", "mint", *args],
        env={**env_without_ours(), "SESSIONVALIDATOR_SECRETS": SECRET, "SESSIONVALIDATOR_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def forged(cookie: str) -> str:
    """The same session id with a signature no secret made."""
    return cookie[:-6] + ("AAAAAA" if not cookie.endswith("AAAAAA") else "BBBBBB")


def request(port: int, path: str, cookie: str | None) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={} if cookie is None else {"Cookie": cookie})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the quick start's app exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            request(port, "/", None)
        except OSError:
            time.sleep(0.2)
        else:
            return
    pytest.fail(f"the quick start's app did not listen on {port} in {timeout} s:\n{log.read_text(errors='replace')}")


def run_shell(script: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> None:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.fixture
def validator() -> Iterator[tuple[RedisServer, ValidatorProcess]]:
    redis_server = RedisServer().start()
    service = None
    try:
        service = ValidatorProcess(
            {"SESSIONVALIDATOR_SECRETS": SECRET, "SESSIONVALIDATOR_REDIS_URL": redis_server.url}
        ).start()
        service.wait_ready()
        yield redis_server, service
    finally:
        if service is not None:
            service.close()
        redis_server.close()


@pytest.mark.parametrize(
    ("lang", "setup"), [("go", "go"), ("node", "node"), ("node", "node-pack"), ("python", "python")]
)
def test_client_quick_start(
    lang: str, setup: str, validator: tuple[RedisServer, ValidatorProcess], tmp_path: Path
) -> None:
    redis_server, service = validator
    code = blocks(READMES[lang])
    for name in (f"{setup}-setup", f"{lang}-app", f"{lang}-run"):
        assert name in code, f"{READMES[lang]} lost its quickstart:{name} block"
    port = free_port()

    def localize(text: str) -> str:
        return text.replace("localhost:50051", service.address)

    env = {**env_without_ours(), "SV": str(ROOT)}
    run_shell(code[f"{setup}-setup"], tmp_path, env)
    app_dir = tmp_path / "myapp"  # every setup block starts with `mkdir myapp && cd myapp`
    assert app_dir.is_dir(), f"{setup}-setup made no myapp directory"
    if setup == "node-pack":
        installed = app_dir / "node_modules" / "@sessionvalidator" / "client"
        assert not installed.is_symlink(), "the packed install still links into the clone"
        assert (installed / "dist" / "index.js").is_file()
    (app_dir / APP_FILES[lang]).write_text(localize(code[f"{lang}-app"]) + "\n", encoding="utf-8")
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        app = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", localize(code[f"{lang}-run"])],
            cwd=app_dir,
            env={**env, "PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, app, log, timeout=240)
        user = mint(redis_server.url, "--user", '{"id":"42","username":"ann"}')
        anonymous = mint(redis_server.url, "--anonymous")
        # Warm the app's channel to the validator and the validator's to Redis: the first calls also
        # connect, and on a loaded machine that can take longer than the clients' 150 ms deadline
        # (an honest 503). Then the user's session must be let in.
        for _ in range(50):
            status, _, body = request(port, "/api/me", user)
            if status != 503:
                break
            time.sleep(0.1)
        assert (status, "42" in body) == (200, True), body
        for what, cookie in (("anonymous", anonymous), ("forged", forged(user)), ("missing", None)):
            status, headers, body = request(port, "/api/me", cookie)
            assert status == 401, f"{what}: {status} {body}"
            assert headers.get("cache-control") == "no-store", what
            assert "verdict" not in body, f"{what}: the body names the verdict: {body}"
        redis_server.stop()  # the outage drill
        status, headers, body = request(port, "/api/me", user)
        assert status == 503, body
        assert headers.get("retry-after") == "1"
        text = log.read_text(errors="replace")
        assert user not in text, "the app logged the cookie"
        if lang == "python":  # the app configures logging: the middleware's warning has its time and level
            assert re.search(r"^\d{4}-\d\d-\d\d \S+ WARNING sessionvalidator: .*503", text, re.MULTILINE), text
    finally:
        stop(app)


def wait_for_output(proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while text not in (output := log.read_text(errors="replace")):
        assert proc.poll() is None, output
        assert time.monotonic() < deadline, output
        time.sleep(0.2)
    return output


@pytest.mark.parametrize("store", ["redis-started", "mongodb-started", "redis-running"])
def test_top_readme_quick_start(store: str, tmp_path: Path) -> None:
    """`make run` on its own port and store URL; then the README's lines as written, in a terminal without them."""
    code = blocks(ROOT / "README.md")
    assert {"top-run", "top-try"} <= code.keys(), "README.md lost its quickstart:top-run/top-try blocks"
    redis_server = RedisServer().start() if store == "redis-running" else None
    store_port = free_port()
    store_url = {
        "redis-started": f"redis://127.0.0.1:{store_port}/0",
        "mongodb-started": f"mongodb://127.0.0.1:{store_port}/myapp",
        "redis-running": redis_server.url if redis_server else "",
    }[store]
    port = free_port()
    # make run's terminal: a service port and a store URL of its own; everything else as a newcomer has it.
    run_env = {
        **env_without_ours(),
        "SESSIONVALIDATOR_STORE_URL": store_url,
        "SESSIONVALIDATOR_LISTEN": f"127.0.0.1:{port}",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", code["top-run"]],
            cwd=ROOT,
            env=run_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        output = wait_for_output(run, log, "Check it", timeout=240)  # FerretDB may be built on first use
        said = {
            "redis-started": f"starting a local redis-server on 127.0.0.1:{store_port}",
            "mongodb-started": f"starting a local FerretDB (MongoDB wire protocol, SQLite) on 127.0.0.1:{store_port}",
            "redis-running": f"using the store that answers at {store_url}",
        }[store]
        assert said in output
        wait_for_output(run, log, "readiness is SERVING", timeout=60)
        # The second terminal: none of make run's variables, only the README's lines.
        run_shell(code["top-try"], ROOT, env_without_ours(), timeout=120)
    finally:
        stop(run)
        if redis_server is not None:
            redis_server.close()
        shutil.rmtree(ROOT / ".tmp" / f"redis-{store_port}", ignore_errors=True)
        shutil.rmtree(ROOT / ".tmp" / f"ferretdb-{store_port}", ignore_errors=True)
    # make run's own cleanup may finish a moment after make itself has gone.
    deadline = time.monotonic() + 20
    while (ROOT / ".tmp" / "run.env").exists():
        assert time.monotonic() < deadline, "make run left .tmp/run.env behind"
        time.sleep(0.1)
