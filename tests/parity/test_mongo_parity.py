"""Parity over MongoDB: for cookies an Express app issued with connect-mongo, the validator decides as the app does.

The app is tests/parity/app.js in its MongoDB mode: express-session 1.19 +
connect-mongo 6 (mongodb 7 driver) or 5.1 (mongodb 6 driver) + Passport 0.7,
with the store given a ``mongoUrl``, a ``clientPromise``, or the client of a
mongoose 9 connection (seed 002), and both ``stringify`` settings. It and the validator share one real MongoDB
wire-protocol server (FerretDB). For each scenario the app's own /whoami
answer is the expected result (tests/parity/test_express_parity.py has the
same scenarios over Redis).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from bson import ObjectId
from google.protobuf import json_format

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.parity.test_express_parity import NEW, OLD, assert_agree, call
from tests.support.processes import ExpressApp, FerretDBServer, running_validator

pytestmark = pytest.mark.parity

# (how MongoStore gets its client, stringify)
MODES = {
    "mongoUrl": {"PARITY_MONGO_CLIENT": "url"},
    "mongoUrl-stringify-false": {"PARITY_MONGO_CLIENT": "url", "PARITY_MONGO_STRINGIFY": "0"},
    "mongoose-connection": {"PARITY_MONGO_CLIENT": "mongoose"},
    "clientPromise-stringify-false": {"PARITY_MONGO_CLIENT": "client", "PARITY_MONGO_STRINGIFY": "0"},
    # connect-mongo 5.1 with the mongodb 6 driver (tests/parity/connect-mongo5)
    "connect-mongo5-mongoUrl": {"PARITY_MONGO_STORE": "connect-mongo5", "PARITY_MONGO_CLIENT": "url"},
    "connect-mongo5-clientPromise-stringify-false": {
        "PARITY_MONGO_STORE": "connect-mongo5",
        "PARITY_MONGO_CLIENT": "client",
        "PARITY_MONGO_STRINGIFY": "0",
    },
}


@contextmanager
def express(server: FerretDBServer, secrets: list[str], **env: str) -> Iterator[ExpressApp]:
    app = ExpressApp("", secrets, PARITY_MONGO_URL=server.url, **env).start()
    try:
        yield app
    finally:
        app.close()


@contextmanager
def validator(server: FerretDBServer, secrets: list[str], **env: str) -> Iterator[pb_grpc.SessionValidatorStub]:
    settings = {
        "SESSIONVALIDATOR_SECRETS": json.dumps(secrets),
        "SESSIONVALIDATOR_STORE_URL": server.url,
        **env,
    }
    with running_validator(settings) as process, grpc.insecure_channel(process.address) as channel:
        yield pb_grpc.SessionValidatorStub(channel)


def sessions(server: FerretDBServer, collection: str = "sessions") -> Any:
    client = server.client()
    return client, client[server.database][collection]


@pytest.fixture(scope="module")
def stub(shared_ferretdb: FerretDBServer) -> Iterator[pb_grpc.SessionValidatorStub]:
    with validator(shared_ferretdb, [NEW], SESSIONVALIDATOR_MONGO_USERS_COLLECTION="users") as stub:
        yield stub


@pytest.fixture(scope="module", params=list(MODES))
def app(request: pytest.FixtureRequest, shared_ferretdb: FerretDBServer) -> Iterator[ExpressApp]:
    with express(shared_ferretdb, [NEW], **MODES[request.param]) as app:
        app.mode = request.param  # type: ignore[attr-defined]
        yield app


@pytest.mark.parametrize(
    ("user", "object_id"),
    [
        ("42", False),
        (42, False),
        (0, False),
        ("6512bd43d9caa6e02c990b0a", False),
        ("6512bd43d9caa6e02c990b0a", True),  # serializeUser returned user._id (an ObjectId)
        ({"id": "u1", "username": "ann", "displayName": "Ann", "roles": ["admin"]}, False),
        ("\u00e9\u00e8", False),
    ],
    ids=["string_id", "number_id", "zero_id", "hex_id", "object_id", "object_user", "non_ascii_id"],
)
def test_login(app: ExpressApp, stub: pb_grpc.SessionValidatorStub, user: Any, *, object_id: bool) -> None:
    status, _, cookie = call(app, "POST", "/login", body={"user": user, "objectId": object_id})
    assert status == 200
    assert cookie is not None
    response = assert_agree(app, stub, [cookie])
    assert response.verdict == pb.VERDICT_VALID
    assert response.authenticated
    assert response.HasField("expire_time")
    if isinstance(user, dict):
        assert response.user.username == "ann"
        assert list(response.user.roles) == ["admin"]


def test_the_stored_form_follows_stringify(app: ExpressApp, shared_ferretdb: FerretDBServer) -> None:
    _, body, _ = call(app, "POST", "/login", body={"user": "42"})
    client, collection = sessions(shared_ferretdb)
    with client:
        document = collection.find_one({"_id": body["sessionID"]})
    assert document is not None
    stringify = MODES[app.mode].get("PARITY_MONGO_STRINGIFY", "1") == "1"  # type: ignore[attr-defined]
    assert isinstance(document["session"], str if stringify else dict)
    assert isinstance(document["expires"], datetime)


def test_anonymous_session(app: ExpressApp, stub: pb_grpc.SessionValidatorStub) -> None:
    _, _, cookie = call(app, "POST", "/anon")
    assert cookie is not None
    response = assert_agree(app, stub, [cookie])
    assert response.verdict == pb.VERDICT_VALID
    assert not response.authenticated


def test_logout(app: ExpressApp, stub: pb_grpc.SessionValidatorStub) -> None:
    _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    _, _, after = call(app, "POST", "/logout", cookies=[cookie])
    old = assert_agree(app, stub, [cookie])
    assert (old.verdict, old.reason) == (pb.VERDICT_MISSING, pb.REASON_SESSION_NOT_FOUND)
    assert after is not None
    new = assert_agree(app, stub, [after])
    assert new.verdict == pb.VERDICT_VALID
    assert not new.authenticated


def test_destroyed_session(app: ExpressApp, stub: pb_grpc.SessionValidatorStub) -> None:
    _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    call(app, "POST", "/destroy", cookies=[cookie])
    assert assert_agree(app, stub, [cookie]).reason == pb.REASON_SESSION_NOT_FOUND


def test_tampered_signature(app: ExpressApp, stub: pb_grpc.SessionValidatorStub) -> None:
    _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    tampered = cookie[:-1] + ("A" if cookie[-1] != "A" else "B")
    assert assert_agree(app, stub, [tampered]).verdict == pb.VERDICT_BAD_SIGNATURE


def test_expired_but_not_yet_removed(
    app: ExpressApp, stub: pb_grpc.SessionValidatorStub, shared_ferretdb: FerretDBServer
) -> None:
    # The TTL monitor (or the interval) has not run yet: connect-mongo finds nothing, the validator says EXPIRED.
    _, body, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    client, collection = sessions(shared_ferretdb)
    with client:
        collection.update_one({"_id": body["sessionID"]}, {"$set": {"expires": datetime.now(UTC) - timedelta(1)}})
    response = assert_agree(app, stub, [cookie])
    assert (response.verdict, response.reason) == (pb.VERDICT_EXPIRED, pb.REASON_SESSION_EXPIRED)


def test_short_max_age_expires(shared_ferretdb: FerretDBServer, stub: pb_grpc.SessionValidatorStub) -> None:
    import time

    with express(shared_ferretdb, [NEW], PARITY_MAX_AGE_MS="1000") as app:
        _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
        assert cookie is not None
        assert assert_agree(app, stub, [cookie]).verdict == pb.VERDICT_VALID
        time.sleep(1.2)
        assert assert_agree(app, stub, [cookie]).verdict == pb.VERDICT_EXPIRED


@pytest.mark.parametrize("corruption", ["{broken", "", {"no": "cookie"}, 5, None], ids=repr)
def test_corrupt_document(
    app: ExpressApp, stub: pb_grpc.SessionValidatorStub, shared_ferretdb: FerretDBServer, corruption: Any
) -> None:
    _, body, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    client, collection = sessions(shared_ferretdb)
    with client:
        collection.update_one({"_id": body["sessionID"]}, {"$set": {"session": corruption}})
    response = assert_agree(app, stub, [cookie])  # the app answers 500 where the validator says CORRUPT
    assert response.verdict != pb.VERDICT_VALID


def test_missing_session_field(
    app: ExpressApp, stub: pb_grpc.SessionValidatorStub, shared_ferretdb: FerretDBServer
) -> None:
    _, body, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    client, collection = sessions(shared_ferretdb)
    with client:
        collection.update_one({"_id": body["sessionID"]}, {"$unset": {"session": ""}})
    assert assert_agree(app, stub, [cookie]).reason == pb.REASON_CORRUPT_SESSION


def test_secret_rotation(shared_ferretdb: FerretDBServer) -> None:
    with express(shared_ferretdb, [OLD]) as old_app:
        _, _, cookie = call(old_app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    with express(shared_ferretdb, [NEW, OLD]) as app, validator(shared_ferretdb, [NEW, OLD]) as stub:
        response = assert_agree(app, stub, [cookie])
        assert response.verdict == pb.VERDICT_VALID
        assert response.secret_index == 1
        _, _, fresh = call(app, "POST", "/login", body={"user": "43"})
        assert fresh is not None
        assert assert_agree(app, stub, [fresh]).secret_index == 0
    with express(shared_ferretdb, [NEW]) as app, validator(shared_ferretdb, [NEW]) as stub:
        assert assert_agree(app, stub, [cookie]).verdict == pb.VERDICT_BAD_SIGNATURE


def test_custom_cookie_name_and_collection(shared_ferretdb: FerretDBServer) -> None:
    with (
        express(shared_ferretdb, [NEW], cookie_name="app.sid", PARITY_MONGO_COLLECTION="app_sessions") as app,
        validator(
            shared_ferretdb,
            [NEW],
            SESSIONVALIDATOR_COOKIE_NAME="app.sid",
            SESSIONVALIDATOR_MONGO_COLLECTION="app_sessions",
        ) as stub,
    ):
        _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
        assert cookie is not None
        assert cookie.startswith("app.sid=")
        assert assert_agree(app, stub, [cookie]).verdict == pb.VERDICT_VALID
        renamed = "connect.sid=" + cookie.split("=", 1)[1]
        assert assert_agree(app, stub, [renamed]).reason == pb.REASON_COOKIE_NOT_FOUND
    with validator(shared_ferretdb, [NEW], SESSIONVALIDATOR_COOKIE_NAME="app.sid") as default_collection:
        response = default_collection.ValidateSession(pb.ValidateSessionRequest(cookie_header_text=cookie), timeout=5)
        assert response.reason == pb.REASON_SESSION_NOT_FOUND  # not in connect-mongo's default collection


@pytest.mark.parametrize("mode", ["mongoUrl", "mongoUrl-stringify-false", "connect-mongo5-mongoUrl"])
def test_rolling_session_follows_the_document_expiry(
    shared_ferretdb: FerretDBServer, stub: pb_grpc.SessionValidatorStub, mode: str
) -> None:
    with express(shared_ferretdb, [NEW], PARITY_ROLLING="1", **MODES[mode]) as app:
        _, body, cookie = call(app, "POST", "/login", body={"user": "42"})
        assert cookie is not None
        first = assert_agree(app, stub, [cookie]).expire_time.ToDatetime()
        # rolling: every response resets the cookie, and connect-mongo's touch moves `expires`.
        call(app, "GET", "/whoami", cookies=[cookie])
        client, collection = sessions(shared_ferretdb)
        with client:
            document = collection.find_one({"_id": body["sessionID"]})
            assert document is not None
            later = stub.ValidateSession(pb.ValidateSessionRequest(cookie_header_text=cookie), timeout=5)
            assert later.expire_time.ToDatetime() >= first
            assert abs(later.expire_time.ToDatetime(tzinfo=UTC) - document["expires"]) < timedelta(milliseconds=2)
            # The stored cookie.expires going stale does not matter: `expires` decides.
            if isinstance(document["session"], str):
                stored = json.loads(document["session"])
                stored["cookie"]["expires"] = "2000-01-01T00:00:00.000Z"
                collection.update_one({"_id": body["sessionID"]}, {"$set": {"session": json.dumps(stored)}})
            else:
                collection.update_one(
                    {"_id": body["sessionID"]}, {"$set": {"session.cookie.expires": datetime(2000, 1, 1, tzinfo=UTC)}}
                )
        assert assert_agree(app, stub, [cookie]).verdict == pb.VERDICT_VALID


@pytest.mark.parametrize("mode", ["mongoose-connection", "mongoUrl-stringify-false"])
def test_user_record_from_the_users_collection(
    shared_ferretdb: FerretDBServer, stub: pb_grpc.SessionValidatorStub, mode: str
) -> None:
    oid = ObjectId()
    client, users = sessions(shared_ferretdb, "users")
    with client:
        users.insert_one(
            {
                "_id": oid,
                "username": "mongo-ann",
                "email": "ann@example.org",
                "roles": ["editor"],
                "password": "$2b$10$abcdefghijklmnopqrstuv",  # a mongoose User's bcrypt hash
            }
        )
    with express(shared_ferretdb, [NEW], PARITY_MONGO_USERS="users", **MODES[mode]) as app:
        for object_id in (False, True):
            _, _, cookie = call(app, "POST", "/login", body={"user": str(oid), "objectId": object_id})
            assert cookie is not None
            response = assert_agree(app, stub, [cookie])
            _, whoami, _ = call(app, "GET", "/whoami", cookies=[cookie])
            assert whoami["record"]["username"] == "mongo-ann"  # what the app's deserializeUser loaded
            assert response.user.id == str(oid)
            assert response.user.username == whoami["record"]["username"]
            assert response.user.email == whoami["record"]["email"]
            assert list(response.user.roles) == whoami["record"]["roles"]
            assert "password" in whoami["record"]
            attributes = json_format.MessageToDict(response.user.attributes)
            assert attributes["username"] == "mongo-ann"
            assert "password" not in attributes


@pytest.mark.parametrize("store", ["connect-mongo6", "connect-mongo5"])
def test_encrypted_sessions_are_refused_as_such(
    shared_ferretdb: FerretDBServer, stub: pb_grpc.SessionValidatorStub, store: str
) -> None:
    # connect-mongo's crypto option: the app can read its sessions, the validator (without that secret) cannot.
    with express(
        shared_ferretdb, [NEW], PARITY_MONGO_CRYPTO="Parity-Crypto-Secret-2026!#xyz", PARITY_MONGO_STORE=store
    ) as app:
        _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
        assert cookie is not None
        status, whoami, _ = call(app, "GET", "/whoami", cookies=[cookie])
        if store == "connect-mongo5":
            # connect-mongo 5.1 with kruptein 3.4 (its ^3.0.0) cannot read its own encrypted sessions back
            # ("[object Object]" is not valid JSON): the app answers 500.
            assert status == 500
        else:
            assert whoami["authenticated"]
        response = stub.ValidateSession(pb.ValidateSessionRequest(cookie_header_text=cookie), timeout=5)
    assert (response.verdict, response.reason) == (pb.VERDICT_MALFORMED, pb.REASON_SESSION_ENCRYPTED)
