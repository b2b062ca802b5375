"""atheris target: Passport users and user records becoming a ``UserProfile``.

Input: JSON bytes (or a nesting request, see tests/fuzz/fuzzing.py ``expand``),
read three ways:

* as a user record stored as a string (``RedisSessionStore._user``, then
  ``build_profile``);
* as a user record stored as a hash (the bytes split on NUL into field,
  value, field, value...);
* as the Passport user inside a live session (``judge_stored``: the truthiness
  rule, ``js_string`` of the id, then the servicer's ``_judge``).

Every profile must serialize and parse back inside a response. Known bugs
are tolerated unless SV_FUZZ_STRICT=1 (tests/fuzz/fuzzing.py).

Run it with tests/fuzz/run.py --target profile.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import atheris  # type: ignore[import-untyped]  # noqa: E402

with atheris.instrument_imports(include=["sessionvalidator_service"]):
    from sessionvalidator.v1 import session_validator_service_pb2 as pb
    from sessionvalidator_service.domain import Credential, UserRecord
    from sessionvalidator_service.jsemu import js_string
    from sessionvalidator_service.stores.redis import RedisSessionStore

from tests.fuzz.fuzzing import expand, tolerate  # noqa: E402
from tests.fuzz.oracles import check_response, json_depth, make_servicer, profile_message  # noqa: E402
from tests.support.stored import redis_stored  # noqa: E402

SERVICER = make_servicer()
CREDENTIAL = Credential(None, "fuzz-session", 0)


def _profile_round_trip(record: dict[str, object], data: bytes) -> None:
    depth = json_depth(record)
    try:
        user_id = record.get("id", record.get("_id"))
        user = UserRecord("" if user_id is None else js_string(user_id), record)
        profile = profile_message(user, record)
        response = pb.ValidateSessionResponse(user=profile)
        parsed = pb.ValidateSessionResponse.FromString(response.SerializeToString())
        assert parsed == response
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - every exception is a finding unless known
        tolerate(exc, data=data, depth=depth)


def test_one_input(fuzz_input: bytes) -> None:
    data = expand(fuzz_input)
    try:
        record = RedisSessionStore._user(data, None)
    except Exception as exc:  # noqa: BLE001
        tolerate(exc, data=data)
        record = None
    if record is not None:
        assert isinstance(record, dict)
        _profile_round_trip(record, data)

    parts = data.split(b"\x00")
    fields = dict(zip(parts[::2], parts[1::2], strict=False))
    hashed = RedisSessionStore._user(None, fields)
    assert (hashed is None) == (not fields)
    if hashed is not None:
        _profile_round_trip(dict(hashed), data)

    stored = b'{"cookie":{"expires":null},"passport":{"user":' + data + b"}}"
    try:
        response, pending = SERVICER._judge(CREDENTIAL, redis_stored(stored, 60_000))
        assert pending is None
        check_response(response)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001
        tolerate(exc, data=data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
