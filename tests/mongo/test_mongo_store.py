"""MongoSessionStore against a real MongoDB wire-protocol server (FerretDB), no service.

Documents are written as connect-mongo writes them (see MongoStore.ts ``set``)
and read back through the store; the service-level behaviour is in
tests/mongo/test_mongo_service.py and the Express app's own documents in
tests/parity/test_mongo_parity.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import Int64, ObjectId
from pymongo import AsyncMongoClient, monitoring

from sessionvalidator_service.domain import Reason, judge_stored
from sessionvalidator_service.stores import (
    ABSENT,
    StoredSession,
    StoreError,
    StoreOptions,
    StoreTimeoutError,
    StoreUnavailableError,
    check_url,
    open_store,
)
from sessionvalidator_service.stores.mongo import MongoSessionStore, check_mongo_url, mongo_database
from tests.support.processes import PARITY_DIR, FerretDBServer

NOW = datetime.now(UTC).replace(microsecond=0)
LATER = NOW + timedelta(hours=1)
EARLIER = NOW - timedelta(minutes=1)


@pytest.fixture
def db(shared_ferretdb: FerretDBServer, request: pytest.FixtureRequest) -> tuple[FerretDBServer, str]:
    """A database of this test's own on the shared server."""
    name = "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:50]
    with shared_ferretdb.client() as client:
        client.drop_database(name)
    return shared_ferretdb, name


def url_of(server: FerretDBServer, database: str) -> str:
    return f"mongodb://127.0.0.1:{server.port}/{database}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def read(url: str, ids: list[str], **options: Any) -> list[StoredSession]:
    store = open_store(url, StoreOptions(timeout_s=2.0, **options))
    try:
        return await store.get_sessions(ids)
    finally:
        await store.aclose()


def insert(server: FerretDBServer, database: str, collection: str, *documents: dict[str, Any]) -> None:
    with server.client() as client:
        client[database][collection].insert_many(list(documents))


def test_open_store_picks_mongo_and_the_url_database(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    store = open_store(url_of(server, name), StoreOptions())
    assert isinstance(store, MongoSessionStore)
    assert store.coalescable
    assert not store.has_user_records
    run(store.aclose())
    assert mongo_database(f"mongodb://127.0.0.1:{server.port}") == "test"  # the Node driver's default
    assert mongo_database("mongodb+srv://u:p@cluster0.example.net/app?retryWrites=true") == "app"


def test_stringified_sessions_come_back_as_the_json_bytes(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    text = json.dumps({"cookie": {"expires": LATER.isoformat()}, "passport": {"user": "ann"}, "n": "é"})
    insert(
        server,
        name,
        "sessions",
        {"_id": "live", "expires": LATER, "session": text},
        {"_id": "past", "expires": EARLIER, "session": text},
        {"_id": "no-expiry", "session": text},
    )
    live, past, missing, no_expiry, live_again = run(
        read(url_of(server, name), ["live", "past", "missing", "no-expiry", "live"])
    )
    assert live == StoredSession(text.encode(), expires=LATER)
    assert live_again == live
    # Not yet removed by the TTL monitor: still read, judged expired from `expires`.
    assert past.expires == EARLIER
    assert past.data == text.encode()
    assert missing is ABSENT
    assert no_expiry == StoredSession(text.encode(), expires=None)


def test_object_sessions_are_decoded_as_json_stringify_renders_them(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    oid = ObjectId()
    cookie_expires = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    insert(
        server,
        name,
        "sessions",
        {
            "_id": "obj",
            "expires": LATER,
            "session": {
                "cookie": {"originalMaxAge": 60000, "expires": cookie_expires, "httpOnly": True, "path": "/"},
                "passport": {"user": oid},
                "count": Int64(7),
                "list": [1, "two", None],
            },
        },
    )
    (stored,) = run(read(url_of(server, name), ["obj"]))
    assert stored.expires == LATER
    assert stored.unusable is None
    assert stored.data == {
        "cookie": {"originalMaxAge": 60000, "expires": "2030-01-02T03:04:05.678Z", "httpOnly": True, "path": "/"},
        "passport": {"user": str(oid)},
        "count": 7,
        "list": [1, "two", None],
    }


@pytest.mark.parametrize(
    ("expires", "found"),
    [(None, False), ("2999-01-01T00:00:00.000Z", False), (123, False), (datetime(2999, 1, 1, tzinfo=UTC), True)],
)
def test_expires_that_is_not_a_date_is_never_found(
    db: tuple[FerretDBServer, str], expires: Any, *, found: bool
) -> None:
    # connect-mongo's get compares `expires` with a Date: null, text and numbers never match.
    server, name = db
    insert(server, name, "sessions", {"_id": "s", "expires": expires, "session": '{"cookie":{}}'})
    (stored,) = run(read(url_of(server, name), ["s"]))
    assert (stored is not ABSENT) is found


def test_unreadable_sessions_are_handed_on_for_the_judge(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    insert(
        server,
        name,
        "sessions",
        {"_id": "none", "expires": LATER},
        {"_id": "number", "expires": LATER, "session": 5},
        {"_id": "null", "expires": LATER, "session": None},
        {"_id": "array", "expires": LATER, "session": [1]},
        {"_id": "text", "expires": LATER, "session": "{not json"},
    )
    none, number, null, array, text = run(read(url_of(server, name), ["none", "number", "null", "array", "text"]))
    assert none.data == b"undefined"  # JSON.parse(undefined) throws: corrupt
    assert number.data == b"5"
    assert null.data == b"null"
    assert array.data == b"[1]"
    assert text.data == b"{not json"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"expires": LATER, "session": '{"cookie":{}}'}, Reason.SESSION_ACTIVE),
        ({"session": '{"cookie":{}}'}, Reason.SESSION_ACTIVE),  # no expires: found by connect-mongo
        ({"expires": EARLIER, "session": '{"cookie":{}}'}, Reason.SESSION_EXPIRED),
        ({"expires": EARLIER}, Reason.SESSION_EXPIRED),
        ({"expires": EARLIER, "session": "x" * 5000}, Reason.SESSION_EXPIRED),
        ({"expires": LATER}, Reason.CORRUPT_SESSION),  # JSON.parse(undefined) throws
        ({"expires": LATER, "session": ""}, Reason.CORRUPT_SESSION),  # JSON.parse('') throws
        ({"expires": LATER, "session": {}}, Reason.CORRUPT_SESSION),  # stringify:false, no cookie
        ({"expires": LATER, "session": {"cookie": "x"}}, Reason.CORRUPT_SESSION),
        ({"expires": LATER, "session": "null"}, Reason.SESSION_NOT_FOUND),
        ({"expires": LATER, "session": 0}, Reason.SESSION_NOT_FOUND),
        ({"expires": LATER, "session": True}, Reason.CORRUPT_SESSION),
        ({"expires": None, "session": '{"cookie":{}}'}, Reason.SESSION_NOT_FOUND),
        ({"expires": LATER, "session": "x" * 5000}, Reason.SESSION_TOO_LARGE),
        ({"expires": LATER, "session": "QUJDREVGR0hJSktMTU5PUA=="}, Reason.SESSION_ENCRYPTED),
    ],
)
def test_documents_are_judged_as_express_session_with_connect_mongo_decides(
    db: tuple[FerretDBServer, str], document: dict[str, Any], reason: Reason
) -> None:
    server, name = db
    insert(server, name, "sessions", {"_id": "s", **document})
    (stored,) = run(read(url_of(server, name), ["s"], max_session_bytes=4096))
    assert judge_stored(stored, datetime.now(UTC)).reason is reason


def test_oversized_sessions_are_refused_unread(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    big = json.dumps({"cookie": {}, "blob": "x" * 5000})
    insert(
        server,
        name,
        "sessions",
        {"_id": "big-text", "expires": LATER, "session": big},
        {"_id": "big-object", "expires": LATER, "session": {"cookie": {}, "blob": "x" * 5000}},
        {"_id": "small", "expires": LATER, "session": '{"cookie":{}}'},
    )
    text, obj, small = run(read(url_of(server, name), ["big-text", "big-object", "small"], max_session_bytes=4096))
    assert text == StoredSession(None, expires=LATER, unusable="too_large")
    assert obj == StoredSession(None, expires=LATER, unusable="too_large")
    assert small.data == b'{"cookie":{}}'


def _ciphertexts() -> dict[str, str]:
    """Encrypt a session with connect-mongo's own crypto adapters (the `crypto` option and Web Crypto)."""
    script = """
    const { createKrupteinAdapter, createWebCryptoAdapter } = require('connect-mongo');
    const text = JSON.stringify({ cookie: { expires: null }, passport: { user: 'ann' } });
    (async () => {
      const out = {
        kruptein: await createKrupteinAdapter({ secret: 'squirrel' }).encrypt(text),
        webcrypto: await createWebCryptoAdapter({ secret: 'squirrel' }).encrypt(text),
        webcrypto_hex: await createWebCryptoAdapter({ secret: 'squirrel', encoding: 'hex' }).encrypt(text),
        webcrypto_b64url: await createWebCryptoAdapter({ secret: 'squirrel', encoding: 'base64url' }).encrypt(text),
      };
      process.stdout.write(JSON.stringify(out));
    })();
    """
    done = subprocess.run(["node", "-e", script], cwd=PARITY_DIR, capture_output=True, check=True, timeout=60)
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_encrypted_sessions_are_recognised_not_parsed(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    ciphertexts = _ciphertexts()
    insert(
        server,
        name,
        "sessions",
        *({"_id": kind, "expires": LATER, "session": text} for kind, text in ciphertexts.items()),
    )
    stored = run(read(url_of(server, name), list(ciphertexts)))
    assert [s.unusable for s in stored] == ["encrypted"] * len(ciphertexts)
    assert all(s.data is None and s.expires == LATER for s in stored)


def test_custom_collection(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    insert(server, name, "my_sessions", {"_id": "s", "expires": LATER, "session": '{"cookie":{}}'})
    (default,) = run(read(url_of(server, name), ["s"]))
    (custom,) = run(read(url_of(server, name), ["s"], mongo_collection="my_sessions"))
    assert default is ABSENT
    assert custom.data == b'{"cookie":{}}'


def test_users_by_string_object_id_and_number(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    oid = ObjectId()
    insert(
        server,
        name,
        "users",
        {"_id": oid, "username": "ann", "created": datetime(2024, 5, 6, tzinfo=UTC)},
        {"_id": "bob", "username": "bob"},
        {"_id": 42, "username": "answer"},
        {"_id": "42", "username": "text-42"},
    )

    async def lookups() -> tuple[list[Any], list[Any]]:
        with_users = open_store(url_of(server, name), StoreOptions(timeout_s=2.0, mongo_users_collection="users"))
        without = open_store(url_of(server, name), StoreOptions(timeout_s=2.0))
        try:
            assert with_users.has_user_records
            return (
                await with_users.get_users([str(oid), str(oid).upper(), "bob", "42", "7", "nobody"]),
                await without.get_users(["bob"]),
            )
        finally:
            await with_users.aclose()
            await without.aclose()

    found, none = run(lookups())
    assert found[0] == {"_id": str(oid), "username": "ann", "created": "2024-05-06T00:00:00.000Z"}
    assert found[1] == found[0]
    assert found[2] == {"_id": "bob", "username": "bob"}
    assert found[3] == {"_id": "42", "username": "text-42"}  # the id as given wins
    assert found[4:] == [None, None]
    assert none == [None]


def test_write_session_is_what_connect_mongo_writes(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    expires = "2031-02-03T04:05:06.789Z"
    with_cookie = json.dumps({"cookie": {"originalMaxAge": 1, "expires": expires}, "passport": {"user": "ann"}})
    browser_session = json.dumps({"cookie": {"originalMaxAge": None, "expires": None}})

    async def write() -> None:
        store = open_store(url_of(server, name), StoreOptions(timeout_s=2.0))
        try:
            await store.write_session("a", with_cookie, ttl_s=60)
            await store.write_session("b", browser_session, ttl_s=300)
            await store.write_session("c", browser_session, ttl_s=None)
            await store.write_session("a", with_cookie, ttl_s=60)  # an upsert, as set is
        finally:
            await store.aclose()

    before = datetime.now(UTC)
    run(write())
    with server.client() as client:
        docs = {d["_id"]: d for d in client[name]["sessions"].find()}
    assert set(docs) == {"a", "b", "c"}
    assert docs["a"]["session"] == with_cookie
    assert docs["a"]["expires"] == datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    assert timedelta(seconds=299) < docs["b"]["expires"] - before < timedelta(seconds=302)
    # No TTL given: connect-mongo's default ttl, 14 days.
    assert timedelta(days=14) - timedelta(seconds=2) < docs["c"]["expires"] - before <= timedelta(days=14, seconds=2)


def test_ping_and_errors_when_the_server_is_gone(ferretdb: FerretDBServer) -> None:
    store = open_store(ferretdb.url, StoreOptions(timeout_s=0.2))

    async def scenario() -> list[Any]:
        results: list[Any] = []
        try:
            await store.ping()
            results.append("up")
            ferretdb.stop()
            for _ in range(3):
                started = time.monotonic()
                try:
                    await store.get_sessions(["x"])
                except StoreError as exc:
                    results.append((type(exc), time.monotonic() - started))
            started = time.monotonic()
            try:
                await store.ping(timeout_s=0.3)
            except StoreError as exc:
                results.append((type(exc), time.monotonic() - started))
            ferretdb.start()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    await store.ping()
                    results.append(("back", 5 - (deadline - time.monotonic())))
                    break
                except StoreError:
                    await asyncio.sleep(0.05)
        finally:
            await store.aclose()
        return results

    results = run(scenario())
    assert results[0] == "up"
    failures = results[1:5]
    assert len(failures) == 4
    for kind, elapsed in failures:
        assert kind in {StoreUnavailableError, StoreTimeoutError}
        assert elapsed < 0.6  # never the driver's 30 s server selection
    assert results[5][0] == "back"
    assert results[5][1] < 2.0


def test_a_hung_server_is_a_timeout_within_the_bound(ferretdb: FerretDBServer) -> None:
    store = open_store(ferretdb.url, StoreOptions(timeout_s=0.15))
    assert ferretdb.proc is not None

    async def scenario() -> list[tuple[type[BaseException], float]]:
        out: list[tuple[type[BaseException], float]] = []
        try:
            await store.ping()
            ferretdb.pause()
            try:
                for call in (lambda: store.get_sessions(["x"]), lambda: store.get_users(["u"]), store.ping):
                    started = time.monotonic()
                    try:
                        await call()
                        out.append((type(None), 0.0))  # type: ignore[arg-type]
                    except StoreError as exc:
                        out.append((type(exc), time.monotonic() - started))
            finally:
                ferretdb.resume()
        finally:
            await store.aclose()
        return out

    results = run(scenario())
    assert results[0][0] is StoreTimeoutError
    assert results[0][1] < 0.4
    # get_users without a users collection never touches the server.
    assert results[1] == (type(None), 0.0)
    assert results[2][0] is StoreTimeoutError
    assert results[2][1] < 0.4


def test_a_closed_port_is_unavailable_quickly() -> None:
    from tests.support.processes import free_port

    async def attempt() -> tuple[type[BaseException], float]:
        store = open_store(f"mongodb://127.0.0.1:{free_port()}/x", StoreOptions(timeout_s=0.1))
        started = time.monotonic()
        try:
            await store.get_sessions(["a"])
        except StoreError as exc:
            return type(exc), time.monotonic() - started
        finally:
            await store.aclose()
        raise AssertionError("no error")

    kind, elapsed = run(attempt())
    assert kind in {StoreUnavailableError, StoreTimeoutError}
    assert elapsed < 0.4


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mongodb://user:hunter2@host/db?bogus=1&authSource=admin", "unknown option 'bogus'"),
        ("mongodb://user:hunter2@host:99999/db", "Port"),
        ("mongodb+srv://user:hunter2@a,b/db", "one"),
        ("mongodb://user:hunter2@host/db.sessions", "SESSIONVALIDATOR_MONGO_COLLECTION"),
        ("mongodb://user:hunter2@host/db?tls=maybe", "tls"),
    ],
)
def test_bad_urls_are_named_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as caught:
        check_mongo_url(url)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValueError, match=needle):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://127.0.0.1:27017/app",
        "mongodb://u:p%40ss@h1:27017,h2:27018/app?replicaSet=rs0&authSource=admin",
        "mongodb+srv://u:p@cluster0.example.net/app?retryWrites=true&w=majority",
        "mongodb://h",
    ],
)
def test_good_urls_pass_without_any_network(url: str) -> None:
    check_url(url)


class _Commands(monitoring.CommandListener):
    """Records the name of every command the driver sends (a real listener on a real client)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_a_batch_is_one_find(db: tuple[FerretDBServer, str]) -> None:
    server, name = db
    ids = [f"sid-{i:04d}" for i in range(256)]
    insert(server, name, "sessions", *({"_id": sid, "expires": LATER, "session": '{"cookie":{}}'} for sid in ids[::2]))
    insert(server, name, "users", *({"_id": f"u{i}", "n": i} for i in range(256)))
    listener = _Commands()

    async def batch() -> tuple[list[StoredSession], list[Any], list[str]]:
        client: AsyncMongoClient[Any] = AsyncMongoClient(url_of(server, name), event_listeners=[listener])
        store = MongoSessionStore(client, name, StoreOptions(timeout_s=2.0, mongo_users_collection="users"))
        try:
            await store.ping()
            listener.names.clear()
            sessions = await store.get_sessions(ids)
            users = await store.get_users([f"u{i}" for i in range(256)])
            sent = list(listener.names)
            return sessions, users, sent
        finally:
            await store.aclose()

    sessions, users, sent = run(batch())
    assert sent == ["find", "find"]  # one round trip each, no getMore
    assert [s is not ABSENT for s in sessions] == [i % 2 == 0 for i in range(256)]
    assert [u and u["n"] for u in users] == list(range(256))


def test_waiting_for_a_pooled_connection_counts_against_the_timeout(ferretdb: FerretDBServer) -> None:
    # One connection, held by a call to a hung server: the others wait in the pool, within the same bound.
    store = open_store(ferretdb.url, StoreOptions(timeout_s=0.15, max_connections=1))
    assert ferretdb.proc is not None

    async def scenario() -> list[tuple[type[BaseException], float]]:
        async def timed() -> tuple[type[BaseException], float]:
            started = time.monotonic()
            try:
                await store.get_sessions(["x"])
            except StoreError as exc:
                return type(exc), time.monotonic() - started
            return type(None), time.monotonic() - started  # type: ignore[return-value]

        try:
            await store.ping()
            ferretdb.pause()
            try:
                return list(await asyncio.gather(*(timed() for _ in range(5))))
            finally:
                ferretdb.resume()
        finally:
            await store.aclose()

    results = run(scenario())
    assert {kind for kind, _ in results} == {StoreTimeoutError}
    assert max(elapsed for _, elapsed in results) < 0.4
