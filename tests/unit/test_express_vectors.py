"""The official cookie-signature / cookie-parser / express-session vectors (tests/vectors/express_cookie.json)."""

from __future__ import annotations

from typing import Any

import pytest

from sessionvalidator_service.cookies import header_from_bytes
from sessionvalidator_service.domain import Reason, read_credential
from sessionvalidator_service.signature import Signer
from tests.conftest import load_vectors

CORPUS = load_vectors("express_cookie.json")

OUTCOME_OF_REASON = {
    Reason.NO_COOKIE: "missing",
    Reason.COOKIE_NOT_FOUND: "missing",
    Reason.EMPTY_VALUE: "missing",
    Reason.NOT_SIGNED: "not_signed",
    Reason.SIGNATURE_MISMATCH: "bad_signature",
    Reason.EMPTY_SESSION_ID: "empty_sid",
    Reason.TOO_LARGE: "too_large",
}


def _secret(vector: dict[str, Any]) -> str | bytes:
    return bytes.fromhex(vector["secret_hex"]) if "secret_hex" in vector else vector["secret"]


@pytest.mark.parametrize("vector", CORPUS["sign"], ids=lambda v: f"{v['value']}|{v.get('secret', v.get('secret_hex'))}")
def test_sign_matches_cookie_signature(vector: dict[str, Any]) -> None:
    signer = Signer([_secret(vector)])
    assert signer.sign(vector["value"]) == vector["signed"]
    unsigned = signer.unsign(vector["signed"])
    assert unsigned is not None
    assert unsigned.value == vector["value"]
    assert unsigned.secret_index == 0


@pytest.mark.parametrize("vector", CORPUS["unsign_reject"], ids=lambda v: v["source"])
def test_unsign_rejects(vector: dict[str, Any]) -> None:
    signer = Signer([vector["secret"]])
    text = vector.get("input") or vector["input_template"].format(val=signer.sign(vector["value"]))
    assert signer.unsign(text) is None


def judge(vector: dict[str, Any]) -> tuple[str, str | None, int | None]:
    signer = Signer(vector.get("secrets", ["keyboard cat"]))
    header = header_from_bytes(bytes.fromhex(vector["header_hex"])) if "header_hex" in vector else vector["header"]
    credential = read_credential(signer, vector.get("cookie_name", "connect.sid"), header=header)
    if credential.reason is None:
        return "ok", credential.session_id, credential.secret_index
    return OUTCOME_OF_REASON[credential.reason], None, credential.secret_index


@pytest.mark.parametrize("vector", CORPUS["headers"], ids=lambda v: v["name"])
def test_header_decisions_match_express_session(vector: dict[str, Any]) -> None:
    outcome, sid, secret_index = judge(vector)
    assert outcome == vector["outcome"]
    if outcome == "ok":
        assert sid == vector["sid"]
    if "secret_index" in vector:
        assert secret_index == vector["secret_index"]
