"""SIGHUP re-reads the secrets file: rotation and the kill switch, without dropping calls."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.mint import mint_session
from sessionvalidator_service.signature import Signer
from tests.support.processes import RedisServer, ValidatorProcess, running_validator

CURRENT = "reload: the current secret, long and random 8Jq2"
OLD = "reload: the previous secret, long and random 3Xv9"


def reloaded(validator: ValidatorProcess, event: str, count: int) -> None:
    """Wait until the service has logged ``event`` ``count`` times."""
    assert validator.output is not None
    deadline = time.monotonic() + 10
    while sum(r.get("event") == event for r in validator.output.json_lines()) < count:
        assert time.monotonic() < deadline, f"no {event} #{count} in the log"
        time.sleep(0.02)


def test_sighup_rotates_and_kills_secrets_without_dropping_calls(redis_server: RedisServer, tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets"
    secrets_file.write_text(f"{CURRENT}\n{OLD}\n", encoding="utf-8")
    session = mint_session(Signer([OLD]), user="42")  # issued before the rotation
    redis_server.client().set("sess:" + session.session_id, session.stored_json, ex=600)
    env = {"SESSIONVALIDATOR_SECRETS_FILE": str(secrets_file), "SESSIONVALIDATOR_REDIS_URL": redis_server.url}
    request = pb.ValidateSessionRequest(signed_value=session.cookie_value)
    with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        response = stub.ValidateSession(request, timeout=5)
        assert (response.verdict, response.secret_index) == (pb.VERDICT_VALID, 1)

        # Calls keep flowing while the secrets change underneath.
        failures: list[BaseException] = []
        done = threading.Event()

        def hammer() -> None:
            while not done.is_set():
                try:
                    stub.ValidateSession(request, timeout=5)
                except grpc.RpcError as exc:
                    failures.append(exc)

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            # A broken file is refused: the current secrets stay.
            secrets_file.write_text("\n", encoding="utf-8")
            assert validator.proc is not None
            validator.proc.send_signal(signal.SIGHUP)
            reloaded(validator, "secrets_reload_failed", 1)
            assert stub.ValidateSession(request, timeout=5).verdict == pb.VERDICT_VALID

            # The kill switch: the old secret removed, its cookies stop at once.
            secrets_file.write_text(f"{CURRENT}\n", encoding="utf-8")
            validator.proc.send_signal(signal.SIGHUP)
            reloaded(validator, "secrets_reloaded", 1)
            assert stub.ValidateSession(request, timeout=5).verdict == pb.VERDICT_BAD_SIGNATURE

            # And it can come back.
            secrets_file.write_text(f"{CURRENT}\n{OLD}\n", encoding="utf-8")
            validator.proc.send_signal(signal.SIGHUP)
            reloaded(validator, "secrets_reloaded", 2)
            assert stub.ValidateSession(request, timeout=5).verdict == pb.VERDICT_VALID
            time.sleep(0.2)
        finally:
            done.set()
            worker.join()
        assert failures == []
        assert validator.output is not None
        text = "\n".join(validator.output.lines)
        assert OLD not in text
        assert CURRENT not in text
        assert all(r.get("secrets") in (None, 1, 2) for r in validator.output.json_lines() if "secrets" in r)
        assert json.dumps(session.session_id)[1:-1] not in text
