"""The configuration table (variables.py) is the one declaration: the README shows it, the code reads only it.

- The README's table is exactly what ``make config-table`` writes.
- Every ``SESSIONVALIDATOR_*`` variable the code reads is declared, and every declared one is read.
- A default the table shows as one literal is the default the code applies: setting the variable to it changes
  nothing.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from sessionvalidator_service import cli
from sessionvalidator_service.config import Settings
from sessionvalidator_service.tokens import new_private_key_pem
from sessionvalidator_service.variables import PREFIX, VARIABLES, markdown_table

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {name for variable in VARIABLES for name in variable.names}
SECRET = "a test secret: long, random-looking and over thirty-two bytes"  # noqa: S105 - a test secret


class Recording(Mapping[str, str]):
    """An environment that remembers every name asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._values[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "signing.pem"
    path.write_bytes(new_private_key_pem("EdDSA"))
    return str(path)


def tokens_on(key_file: str) -> dict[str, str]:
    """What session tokens need, so their other settings can be read too."""
    return {PREFIX + "JWT_KEY_FILE": key_file, PREFIX + "JWT_ISSUER": "i", PREFIX + "JWT_AUDIENCE": "a"}


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(
        r"<!-- config-table: generated[^\n]*-->\n\n(.*?)\n\n<!-- config-table: end -->", readme, re.DOTALL
    )
    assert block is not None, "the README's config-table markers are missing"
    assert block.group(1) == markdown_table(), "the README's configuration table is stale: run `make config-table`"


def test_every_variable_read_is_declared_and_every_declared_one_is_read(key_file: str) -> None:
    env = Recording({PREFIX + "SECRETS": SECRET, **tokens_on(key_file)})
    Settings.from_env(env)
    # The command line's TLS defaults for check and healthcheck.
    options = argparse.Namespace(tls_ca=None, tls_cert=None, tls_key=None, tls_server_name=None)
    cli._channel("127.0.0.1:1", options, env).close()
    read = {name.removeprefix(PREFIX) for name in env.asked if name.startswith(PREFIX)}
    assert read - DECLARED == set(), "read but not declared in variables.py"
    assert DECLARED - read == set(), "declared in variables.py but never read"


def single_literal_defaults() -> Iterator[tuple[str, str]]:
    """Variables whose shown default is one literal value (`100`, `grpcio`, `1048576` (1 MiB))."""
    for variable in VARIABLES:
        match = re.fullmatch(r"`([^`]+)`(?: \([^)]*\))?", variable.default)
        if match is not None and len(variable.names) == 1:
            yield variable.names[0], match.group(1)


@pytest.mark.parametrize(("name", "literal"), list(single_literal_defaults()))
def test_the_default_shown_is_the_default_applied(name: str, literal: str, key_file: str) -> None:
    base = {PREFIX + "SECRETS": SECRET, **(tokens_on(key_file) if name.startswith("JWT_") else {})}
    assert Settings.from_env({**base, PREFIX + name: literal}) == Settings.from_env(base)


def test_the_defaults_checked_are_most_of_them() -> None:
    # Guards the pattern above: a table rewritten so no default matches would check nothing.
    assert len(list(single_literal_defaults())) >= 20
