"""The public surface is deliberate: exactly these names, all documented and importable."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import grpc
import pytest

import sessionvalidator
from sessionvalidator import SessionValidatorError, StoreUnavailableError, User, Validation, ValidatorTimeoutError
from sessionvalidator._models import from_response
from sessionvalidator.v1 import session_validator_service_pb2 as pb

PUBLIC = [
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "BatchItem",
    "Client",
    "RateLimitedError",
    "SessionValidatorError",
    "SessionValidatorMiddleware",
    "StoreUnavailableError",
    "User",
    "Validation",
    "ValidatorTimeoutError",
    "validate_environ",
]


def test_exported_members() -> None:
    assert sessionvalidator.__all__ == PUBLIC
    for name in PUBLIC:
        member = getattr(sessionvalidator, name)
        if callable(member):
            assert member.__doc__, f"{name} has no docstring"
    # v1 (generated) and tokens (needs the tokens extra, so it is imported on its own) are public submodules.
    public_modules = {
        name
        for name in dir(sessionvalidator)
        if not name.startswith("_") and name not in PUBLIC and name not in {"v1", "tokens"}
    }
    assert public_modules == set(), "private modules must stay underscored"


def test_default_timeout_is_under_envoys_200ms() -> None:
    assert sessionvalidator.DEFAULT_TIMEOUT == 0.15


def test_error_hierarchy() -> None:
    assert issubclass(StoreUnavailableError, SessionValidatorError)
    assert issubclass(ValidatorTimeoutError, SessionValidatorError)
    assert not issubclass(ValidatorTimeoutError, StoreUnavailableError)
    error = StoreUnavailableError("session store unavailable", code=grpc.StatusCode.UNAVAILABLE, reason="STORE_TIMEOUT")
    assert str(error) == "UNAVAILABLE: session store unavailable [STORE_TIMEOUT]"
    with pytest.raises(TypeError):
        error.metadata["x"] = "y"  # type: ignore[index]


def test_validation_is_frozen() -> None:
    validation = Validation(verdict="VERDICT_VALID", reason="REASON_SESSION_ACTIVE")
    with pytest.raises(dataclasses.FrozenInstanceError):
        validation.verdict = "VERDICT_MISSING"  # type: ignore[misc]


def test_unknown_enum_values_are_numbers_and_not_valid() -> None:
    """The enums are open: a verdict from a newer server is given by number and denied."""
    response = pb.ValidateSessionResponse(verdict=99, reason=77, session_id="s")  # type: ignore[arg-type]
    validation = from_response(response)
    assert (validation.verdict, validation.reason) == ("99", "77")
    assert not validation.valid
    assert not from_response(pb.ValidateSessionResponse()).valid  # VERDICT_UNSPECIFIED


def test_response_mapping() -> None:
    response = pb.ValidateSessionResponse(
        verdict=pb.VERDICT_VALID,
        reason=pb.REASON_SESSION_ACTIVE,
        session_id="sid",
        authenticated=True,
        secret_index=0,
        cookie_name="connect.sid",
        user=pb.UserProfile(id="7", username="seven", roles=["a", "b"]),
    )
    response.user.attributes.update({"id": 7, "score": 1.5, "tags": [1, "x"], "nested": {"n": 2}, "none": None})
    response.expire_time.FromDatetime(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    validation = from_response(response)
    assert validation.secret_index == 0
    assert validation.expire_time == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert validation.user == User(
        id="7",
        username="seven",
        roles=("a", "b"),
        attributes={"id": 7, "score": 1.5, "tags": [1, "x"], "nested": {"n": 2}, "none": None},
    )
    assert isinstance(validation.user.attributes["id"], int)
    bare = from_response(pb.ValidateSessionResponse(verdict=pb.VERDICT_MISSING, reason=pb.REASON_NO_COOKIE))
    assert (bare.secret_index, bare.expire_time, bare.user, bare.session_id) == (None, None, None, "")
