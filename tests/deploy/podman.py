"""Podman for the image tests: this machine's runtime and limits, containers that clean up after themselves.

This kind of machine needs the runc runtime (crun refuses its hybrid cgroups)
and explicit ulimits (podman's defaults cannot be set here); a containers.conf
of our own carries both, so podman-compose gets them too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

IMAGE = os.environ.get("IMAGE", "localhost/sessionvalidator:test")
REDIS_IMAGE = os.environ.get("REDIS_IMAGE", "localhost/sessionvalidator-redis:bookworm")


def _containers_conf() -> Path:
    runtime = os.environ.get("PODMAN_RUNTIME", "runc")
    ulimits = re.findall(r"--ulimit\s+(\S+)", os.environ.get("PODMAN_ULIMITS", ""))
    ulimits = ulimits or ["nofile=16384:16384", "nproc=4096:4096"]
    conf = Path(__file__).resolve().parents[2] / ".tmp" / "image" / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        f"[containers]\ndefault_ulimits = {json.dumps(ulimits)}\n[engine]\nruntime = {json.dumps(runtime)}\n",
        encoding="utf-8",
    )
    return conf


ENV = {**os.environ, "CONTAINERS_CONF": str(_containers_conf())}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run podman; on failure the error names the command and its output."""
    result = subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        msg = f"podman {shlex.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        raise AssertionError(msg)
    return result


def unique_name(prefix: str = "sv-test") -> str:
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"


def image_config(image: str = IMAGE) -> dict[str, Any]:
    out = podman("image", "inspect", image).stdout
    return dict(json.loads(out)[0])


class Container:
    """One detached container of ours, removed (and only it) when the test is done."""

    def __init__(self, name: str) -> None:
        self.name = name

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *argv: str, user: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        flags = ["--user", user] if user else []
        return podman("exec", *flags, self.name, *argv, check=False, timeout=timeout)

    def state(self) -> dict[str, Any]:
        return dict(json.loads(podman("inspect", self.name).stdout)[0]["State"])

    def wait_log(self, needle: str, timeout: float = 30) -> float:
        """Seconds until `needle` shows in the logs; fails with the logs if it never does."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if needle in self.logs():
                return time.monotonic() - start
            if not self.state().get("Running", False):
                break
            time.sleep(0.05)
        msg = f"{needle!r} not in the logs of {self.name} within {timeout}s:\n{self.logs()}"
        raise AssertionError(msg)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


@contextlib.contextmanager
def run(args: Sequence[str], image: str = IMAGE, command: Sequence[str] = ()) -> Iterator[Container]:
    """`podman run -d` with host networking (this machine's rule) and our name."""
    container = Container(unique_name())
    podman("run", "--detach", "--name", container.name, "--network", "host", *args, image, *command)
    try:
        yield container
    finally:
        container.remove()
