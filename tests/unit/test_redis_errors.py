"""Redis error replies typed once (stores/redis_errors.py): what each class means to the store."""

from __future__ import annotations

import pytest
import redis.exceptions

from sessionvalidator_service.stores import StoreTimeoutError, StoreUnavailableError
from sessionvalidator_service.stores.redis_errors import (
    WrongTypeError,
    describe,
    refuses_scripts,
    reply_error,
    store_error,
    typed,
)


@pytest.mark.parametrize(
    ("reply", "kind", "scripts_refused"),
    [
        ("WRONGTYPE Operation against a key holding the wrong kind of value", WrongTypeError, False),
        ("NOSCRIPT No matching script. Please use EVAL.", redis.exceptions.NoScriptError, False),
        ("NOPERM User app has no permissions to run the 'evalsha' command", redis.exceptions.NoPermissionError, True),
        ("ERR unknown command 'EVALSHA', with args beginning with: ", redis.exceptions.ResponseError, True),
        ("LOADING Redis is loading the dataset in memory", redis.exceptions.BusyLoadingError, False),
        ("BUSY Redis is busy running a script.", redis.exceptions.ResponseError, False),
        ("MASTERDOWN Link with MASTER is down", redis.exceptions.MasterDownError, False),
        ("READONLY You can't write against a read only replica.", redis.exceptions.ReadOnlyError, False),
    ],
)
def test_each_reply_gets_its_class_and_only_noperm_and_err_refuse_scripts(
    reply: str, kind: type[Exception], scripts_refused: bool
) -> None:
    error = reply_error(reply)
    assert type(error) is kind
    assert describe(error) == reply  # Redis's own words, first word included
    assert refuses_scripts(error) is scripts_refused


def test_a_pooled_wrongtype_reply_is_typed_like_a_pipelined_one() -> None:
    assert isinstance(typed(redis.exceptions.ResponseError("WRONGTYPE Operation against a key")), WrongTypeError)
    other = redis.exceptions.ResponseError("BUSY Redis is busy")
    assert typed(other) is other
    assert typed(b"value") == b"value"


def test_client_failures_map_to_the_store_errors() -> None:
    assert isinstance(store_error(TimeoutError()), StoreTimeoutError)
    assert isinstance(store_error(redis.exceptions.TimeoutError("slow")), StoreTimeoutError)
    assert isinstance(store_error(redis.exceptions.ConnectionError("refused")), StoreUnavailableError)
    assert isinstance(store_error(OSError("reset")), StoreUnavailableError)
    unavailable = store_error(reply_error("LOADING Redis is loading the dataset in memory"))
    assert isinstance(unavailable, StoreUnavailableError)
    assert str(unavailable) == "LOADING Redis is loading the dataset in memory"
    already = StoreTimeoutError("t")
    assert store_error(already) is already
