"""User ids are rendered as JavaScript's String() renders them after JSON.parse."""

from __future__ import annotations

import json
import math
import random
import struct
import subprocess

import pytest

from sessionvalidator_service.jsemu import js_string
from tests.support.processes import PARITY_DIR

pytestmark = pytest.mark.parity


def numbers(seed: int, count: int) -> list[str]:
    """JSON number texts: integers of every size and doubles of every magnitude."""
    rng = random.Random(seed)
    texts = ["0", "-0", "1e21", "1e-7", "12345678901234567890", "9007199254740993", "0.1", "1.5e-7", "100"]
    while len(texts) < count:
        kind = rng.random()
        if kind < 0.4:
            texts.append(str(rng.randint(-(10 ** rng.randint(1, 25)), 10 ** rng.randint(1, 25))))
        else:
            value = struct.unpack("<d", rng.randbytes(8))[0]
            if math.isfinite(value):
                texts.append(repr(value))
    return texts


def test_js_string_matches_node_on_numbers() -> None:
    texts = numbers(20261122, 3000)
    script = (
        "const xs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(xs.map(t => String(JSON.parse(t)))));"
    )
    result = subprocess.run(
        ["node", "-e", script],
        cwd=PARITY_DIR,
        input=json.dumps(texts).encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    expected = json.loads(result.stdout)
    mismatches = [
        (t, js_string(json.loads(t)), e) for t, e in zip(texts, expected, strict=True) if js_string(json.loads(t)) != e
    ]
    assert mismatches == []
