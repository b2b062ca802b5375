"""atheris target: the Cookie header parser and the signature check.

Input: raw Cookie header bytes. Each input is judged three ways, as the
three request fields carry it: ``cookie_header`` (bytes read as latin-1),
``cookie_header_text`` (the bytes as UTF-8 text) and ``signed_value``
(the same text as a bare value). Every verdict must be coherent and equal
to the reference model's (tests/fuzz/oracles.py); decodeURIComponent must
match its reference. No exception is expected at all.

Run it with tests/fuzz/run.py --target cookie.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import atheris  # type: ignore[import-untyped]  # noqa: E402

with atheris.instrument_imports(include=["sessionvalidator_service"]):
    from sessionvalidator_service.cookies import decode_uri_component, header_from_bytes
    from sessionvalidator_service.domain import read_credential
    from sessionvalidator_service.signature import Signer

from tests.fuzz.oracles import (  # noqa: E402
    COOKIE_NAME,
    FUZZ_SECRETS,
    check_credential,
    ref_decode_uri_component,
    ref_read_credential,
)

SIGNER = Signer(list(FUZZ_SECRETS))


def _decoded(decode: Callable[[str], str], text: str) -> str | None:
    try:
        return decode(text)
    except ValueError:
        return None


def test_one_input(data: bytes) -> None:
    latin1 = header_from_bytes(data)
    text = data.decode("utf-8", "replace")
    for kind, content in (("header", latin1), ("header", text), ("value", text)):
        credential = read_credential(SIGNER, COOKIE_NAME, **{kind: content})
        check_credential(credential, len(FUZZ_SECRETS))
        expected = ref_read_credential(FUZZ_SECRETS, COOKIE_NAME, **{kind: content})
        if credential != expected:
            msg = f"{kind}={content!r}: service {credential}, reference {expected}"
            raise AssertionError(msg)
    if _decoded(decode_uri_component, latin1) != _decoded(ref_decode_uri_component, latin1):
        msg = f"decodeURIComponent({latin1!r}) differs from the reference"
        raise AssertionError(msg)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
