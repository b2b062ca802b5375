"""Static checks of the Dockerfile, fast and engine-free.

The image itself is built and run under podman by `make test-image` (tests/deploy/test_image.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_multi_stage() -> None:
    assert sum(1 for keyword, _ in instructions() if keyword == "FROM") >= 2


def test_final_stage_runs_as_numeric_non_root_user() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_exec_form_entrypoint_and_healthcheck() -> None:
    stage = dict(final_stage())
    entrypoint = json.loads(stage["ENTRYPOINT"])
    assert entrypoint == ["python", "-m", "sessionvalidator_service"]
    assert json.loads(stage["CMD"]) == ["serve"]
    healthcheck = stage["HEALTHCHECK"]
    assert json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip()) == [
        "python",
        "-m",
        "sessionvalidator_service",
        "healthcheck",
    ]
    assert "50051" in stage["EXPOSE"]


def test_no_build_tools_in_the_final_stage() -> None:
    for keyword, rest in final_stage():
        assert keyword != "RUN", f"the runtime stage runs nothing: {rest}"
        assert not re.search(r"\b(gcc|build-essential|apt-get|pip install)\b", rest)
    copies = [rest for keyword, rest in final_stage() if keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]


def test_every_copied_source_exists() -> None:
    defaults = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name] = value
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            for source in sources:
                resolved = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], source)
                assert (ROOT / resolved).exists(), source


def test_dependencies_install_from_hashes_and_offline_from_a_wheelhouse() -> None:
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert "--require-hashes" in runs
    assert "PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse" in runs
    assert "--only-binary=:all:" in runs


def test_the_wheelhouse_reaches_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ".tmp/*" in ignored
    assert "!.tmp/wheelhouse" in ignored


def test_runtime_requirements_are_fully_pinned() -> None:
    for line in (ROOT / "requirements" / "runtime.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.]*", line), line
