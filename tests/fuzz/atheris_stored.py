"""atheris target: what the store holds for a verified session id.

Input: the raw bytes of a stored session (or a nesting request, see
tests/fuzz/fuzzing.py ``expand``). Each input is judged under several
key PTTLs (no key, no TTL, zero, an hour, ~11 days): ``parse_json`` may raise
only ValueError, ``judge_stored`` must answer with a store reason, and the
servicer's ``_judge`` must turn that into a response that serializes and
parses back (expire_time, the Passport user and its profile included).
Known bugs are tolerated unless SV_FUZZ_STRICT=1 (tests/fuzz/fuzzing.py).

Run it with tests/fuzz/run.py --target stored.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import atheris  # type: ignore[import-untyped]  # noqa: E402

with atheris.instrument_imports(include=["sessionvalidator_service"]):
    from sessionvalidator_service.domain import Credential, judge_stored
    from sessionvalidator_service.jsemu import parse_json

from tests.fuzz.fuzzing import expand, tolerate  # noqa: E402
from tests.fuzz.oracles import FIXED_NOW, STORE_REASONS, check_response, make_servicer  # noqa: E402
from tests.support.stored import redis_stored  # noqa: E402

PTTLS = (-2, -1, 0, 3_600_000, 10**9)
SERVICER = make_servicer()
CREDENTIAL = Credential(None, "fuzz-session", 0)


def test_one_input(fuzz_input: bytes) -> None:
    data = expand(fuzz_input)
    try:
        parse_json(data)
    except ValueError:
        pass
    except Exception as exc:  # noqa: BLE001 - anything but ValueError is a finding
        tolerate(exc, data=data)
    for pttl_ms in PTTLS:
        try:
            judgement = judge_stored(redis_stored(data, pttl_ms), FIXED_NOW)
        except Exception as exc:  # noqa: BLE001
            tolerate(exc, data=data, pttl_ms=pttl_ms)
            continue
        assert judgement.reason in STORE_REASONS
        try:
            response, pending = SERVICER._judge(CREDENTIAL, redis_stored(data, pttl_ms))
            assert pending is None
            check_response(response)
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001
            tolerate(exc, data=data, pttl_ms=pttl_ms, expires=judgement.expire_time)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
