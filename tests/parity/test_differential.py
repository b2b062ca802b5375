"""Differential test: our parser and verifier against Node's real cookie + cookie-signature.

Thousands of generated Cookie headers (and bare values), many of them hostile,
are judged by tests/parity/oracle.js, which runs express-session 1.19's own
getcookie logic with the exact cookie 0.7.2 and cookie-signature 1.0.7 it
resolves, and by our read_credential. Every decision and every session id
must agree.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
from typing import Any

import pytest

from sessionvalidator_service.cookies import header_from_bytes
from sessionvalidator_service.domain import MAX_CREDENTIAL_LENGTH, Reason, read_credential
from sessionvalidator_service.mint import encode_uri_component
from sessionvalidator_service.signature import Signer
from tests.support.processes import PARITY_DIR

pytestmark = pytest.mark.parity

CASES = 6000
SECRET_SETS = [["keyboard cat"], ["nyan cat", "keyboard cat"], ["ключ🔑", "café"]]
NAMES = ["connect.sid", "sid", "connect.sid "]
SID_ALPHABET = 'abcXYZ019-_.%+/ :=;,"\\é\u00ff\x7f\t'

OUTCOME = {
    Reason.NO_COOKIE: "missing",
    Reason.COOKIE_NOT_FOUND: "missing",
    Reason.EMPTY_VALUE: "missing",
    Reason.NOT_SIGNED: "not_signed",
    Reason.SIGNATURE_MISMATCH: "bad_signature",
    Reason.EMPTY_SESSION_ID: "empty_sid",
}


def random_sid(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return base64.urlsafe_b64encode(rng.randbytes(24)).rstrip(b"=").decode()
    if kind < 0.53:
        return ""
    return "".join(rng.choice(SID_ALPHABET) for _ in range(rng.randint(1, 12)))


def encode_some(rng: random.Random, text: str) -> str:
    """Percent-encode all, some or none of a value, sometimes breaking an escape."""
    choice = rng.random()
    if choice < 0.45:
        return encode_uri_component(text)
    if choice < 0.75:
        return text
    out = "".join(encode_uri_component(ch) if rng.random() < 0.5 else ch for ch in text)
    if rng.random() < 0.3:
        pos = rng.randint(0, len(out))
        out = out[:pos] + rng.choice(["%", "%z", "%C3", "%ED%A0%80", "%2", "%25", "%3D"]) + out[pos:]
    return out


def random_value(rng: random.Random, secrets: list[str]) -> str:
    sid = random_sid(rng)
    signer = Signer([rng.choice([*secrets, "some other secret"])])
    signed = "s:" + signer.sign(sid)
    roll = rng.random()
    if roll < 0.1:
        signed = signed[: rng.randint(0, len(signed))]  # truncated
    elif roll < 0.2:
        signed += rng.choice(["=", "==", ".x", "garbage", "%3D"])
    elif roll < 0.3:
        pos = rng.randrange(len(signed))
        signed = signed[:pos] + rng.choice("aZ+/=.:") + signed[pos + 1 :]  # flipped character
    elif roll < 0.35:
        signed = "S" + signed[1:]
    elif roll < 0.4:
        signed = signed[2:]  # unsigned
    value = encode_some(rng, signed)
    if rng.random() < 0.1:
        value = f'"{value}"'
    elif rng.random() < 0.05:
        value = '"' + value
    if rng.random() < 0.15:
        value = rng.choice([" ", "\t", " \t"]) + value + rng.choice(["", " ", "\t"])
    return value


def random_header(rng: random.Random, name: str, secrets: list[str]) -> bytes:
    pairs: list[str] = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.random()
        if kind < 0.5:
            key = (
                name.strip()
                if rng.random() < 0.85
                else rng.choice([name.upper(), " " + name.strip(), name.strip() + "\t", "x" + name.strip()])
            )
            pairs.append(f"{key}={random_value(rng, secrets)}")
        elif kind < 0.75:
            pairs.append(f"{rng.choice(['theme', 'lang', '_ga', 'a'])}={rng.choice(['dark', 'x=y', '', '%zz', '1,2'])}")
        elif kind < 0.85:
            pairs.append(rng.choice(["novalue", "", " ", "=", "==x"]))
        else:
            pairs.append(f"{name.strip()}=")
    separators = [rng.choice([";", "; ", ";\t", " ; ", ",", ";;"]) for _ in pairs]
    text = "".join(pair + sep for pair, sep in zip(pairs, separators, strict=True))
    if text and rng.random() < 0.7:
        text = text.rstrip("; ,\t")
    encoding = rng.choice(["latin-1", "latin-1", "utf-8"])
    return text.encode(encoding, "replace") if encoding == "utf-8" else text.encode("latin-1", "replace")


def generate(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(CASES):
        secrets = rng.choice(SECRET_SETS)
        name = rng.choice(NAMES).strip()
        if rng.random() < 0.15:
            cases.append({"value": random_value(rng, secrets), "name": name, "secrets": secrets})
        else:
            header = random_header(rng, name, secrets)[:MAX_CREDENTIAL_LENGTH]
            cases.append({"header_b64": base64.b64encode(header).decode(), "name": name, "secrets": secrets})
    return cases


def ours(case: dict[str, Any]) -> dict[str, Any]:
    signer = Signer(case["secrets"])
    if "value" in case:
        credential = read_credential(signer, case["name"], value=case["value"])
    else:
        header = header_from_bytes(base64.b64decode(case["header_b64"]))
        credential = read_credential(signer, case["name"], header=header)
    if credential.reason is None:
        return {"outcome": "ok", "sid": credential.session_id, "secret_index": credential.secret_index}
    return {"outcome": OUTCOME[credential.reason], "sid": None, "secret_index": credential.secret_index}


def oracle(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not (PARITY_DIR / "node_modules").is_dir():
        pytest.fail("tests/parity/node_modules is missing: run `make node-deps`")
    result = subprocess.run(
        ["node", "oracle.js"],
        cwd=PARITY_DIR,
        input="".join(json.dumps(case) + "\n" for case in cases).encode(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


@pytest.mark.parametrize("seed", [20261122, 7])
def test_parser_and_verifier_agree_with_node(seed: int) -> None:
    cases = generate(seed)
    expected = oracle(cases)
    assert len(expected) == len(cases)
    outcomes = {"missing": 0, "not_signed": 0, "bad_signature": 0, "empty_sid": 0, "ok": 0}
    mismatches = []
    for case, want in zip(cases, expected, strict=True):
        assert want["outcome"] != "error", (case, want)
        got = ours(case)
        outcomes[want["outcome"]] += 1
        fields = ("outcome", "sid", "secret_index") if want["outcome"] in {"ok", "empty_sid"} else ("outcome",)
        if any(got[f] != want[f] for f in fields):
            mismatches.append((case, want, got))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:3]}"
    # The generator must exercise every decision, and valid cookies often.
    assert min(outcomes.values()) >= 100, outcomes
