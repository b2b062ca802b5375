"""requirements/runtime.lock and build.lock follow what they are made from; `make lock` remakes them.

requirements/runtime.txt is the one human-edited list of pins; the image
installs the hash-pinned lock with --require-hashes. These checks are offline.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
STALE = "out of date with {source}: run `make lock` and commit requirements/*.lock"


def pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` requirement (names normalised as pip does)."""
    found = {}
    for match in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", text, flags=re.MULTILINE):
        found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def recorded_hash(lock: Path) -> str:
    first = lock.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# inputs-sha256: "), f"{lock.name} has no inputs-sha256 header: run `make lock`"
    return first.removeprefix("# inputs-sha256: ")


def build_requires_from_makefile() -> list[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^BUILD_REQUIRES := (.+)$", makefile, flags=re.MULTILINE)
    assert match
    return match.group(1).split()


def test_runtime_lock_matches_runtime_txt() -> None:
    source = (REQUIREMENTS / "runtime.txt").read_bytes()
    lock = REQUIREMENTS / "runtime.lock"
    assert recorded_hash(lock) == hashlib.sha256(source).hexdigest(), STALE.format(source="requirements/runtime.txt")
    locked = pins(lock.read_text(encoding="utf-8"))
    for name, version in pins(source.decode()).items():
        assert locked.get(name) == version, f"{name}=={version} " + STALE.format(source="requirements/runtime.txt")


def test_build_lock_matches_the_build_backend_pins() -> None:
    requires = build_requires_from_makefile()
    source = "".join(f"{line}\n" for line in requires).encode()
    lock = REQUIREMENTS / "build.lock"
    assert recorded_hash(lock) == hashlib.sha256(source).hexdigest(), STALE.format(source="BUILD_REQUIRES")
    locked = pins(lock.read_text(encoding="utf-8"))
    for name, version in pins(source.decode()).items():
        assert locked[name] == version
    # The packages are built with the backend their pyproject.toml names.
    for project in ["service", "clients/python"]:
        pyproject = (ROOT / project / "pyproject.toml").read_text(encoding="utf-8")
        backend = re.search(r"^requires = \[(.*)\]$", pyproject, flags=re.MULTILINE)
        assert backend
        assert sorted(re.findall(r'"([^"]+)"', backend.group(1))) == sorted(requires), project


def test_every_locked_requirement_has_hashes() -> None:
    for name in ["runtime.lock", "build.lock"]:
        text = (REQUIREMENTS / name).read_text(encoding="utf-8")
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 3)[-1])
        requirements = [entry for entry in entries if re.match(r"[A-Za-z0-9]", entry)]
        assert requirements
        for entry in requirements:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_image_installs_the_locks_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile.count("--require-hashes") == 2
    assert "-r /src/requirements/runtime.lock" in dockerfile
    assert "-r /src/requirements/build.lock" in dockerfile
    assert "pygrpc-native" in pins((REQUIREMENTS / "runtime.lock").read_text(encoding="utf-8"))


def test_the_lock_holds_every_dependency_the_packages_declare() -> None:
    """The image installs the two wheels with --no-deps: the lock must already hold what they ask for."""
    locked = pins((REQUIREMENTS / "runtime.lock").read_text(encoding="utf-8"))
    own = {"sessionvalidator", "sessionvalidator-service"}
    for project in ["service", "clients/python"]:
        metadata = tomllib.loads((ROOT / project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        declared = list(metadata["dependencies"])
        for extra in metadata.get("optional-dependencies", {}).values():
            declared += extra
        for requirement in declared:
            name = re.sub(r"[-_.]+", "-", re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0]).lower()
            if name not in own:
                assert name in locked, f"{project} needs {name}: add it to requirements/runtime.txt and run `make lock`"
