"""Timing tests run only when asked: ``-m timing`` or ``TIMING=1`` (``make timing``).

They measure nanosecond differences, which a shared or busy machine blurs, so
the default ``pytest`` run (``make test``) skips them. The ``timing`` marker
is declared here when pyproject.toml does not declare it yet, so that
``--strict-markers`` accepts it either way.
"""

from __future__ import annotations

import os
import re

import pytest

MARKER = "timing: statistical constant-time tests; run only with -m timing or TIMING=1 (make timing)"


def pytest_configure(config: pytest.Config) -> None:
    if not any(str(line).startswith("timing:") for line in config.getini("markers")):
        config.addinivalue_line("markers", MARKER)


def _asked_for(config: pytest.Config) -> bool:
    if os.environ.get("TIMING") == "1":
        return True
    expression = str(config.getoption("markexpr") or "")
    return re.search(r"\btiming\b", expression) is not None and re.search(r"\bnot\s+timing\b", expression) is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    skip = pytest.mark.skip(reason="timing test: run with -m timing or TIMING=1 (make timing)")
    for item in items:
        if item.get_closest_marker("timing") is not None:
            item.add_marker(skip)
