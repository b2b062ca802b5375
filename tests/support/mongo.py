"""The MongoDB side of the tests: the shared vectors as connect-mongo documents, and the service's settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sessionvalidator_service.jsemu import parse_json
from tests.conftest import load_vectors
from tests.support.processes import FerretDBServer

CORPUS = load_vectors("validate_session.json")
# Vectors only a MongoDB store can produce: encrypted, object and expired-but-present documents.
MONGO_ONLY = load_vectors("validate_session_mongo.json")
USERS = "users"


def mongo_env(server: FerretDBServer, **extra: str) -> dict[str, str]:
    """The vectors' settings pointed at ``server`` (connect-mongo's defaults, users in ``users``)."""
    settings = {k: v for k, v in CORPUS["settings"].items() if k != "SESSIONVALIDATOR_USER_KEY"}
    return {
        **settings,
        "SESSIONVALIDATOR_STORE_URL": server.url,
        "SESSIONVALIDATOR_MONGO_USERS_COLLECTION": USERS,
        **extra,
    }


def seed_mongo(server: FerretDBServer, corpus: dict[str, Any]) -> None:
    """Write the corpus as connect-mongo would: ``{_id, session: <JSON text>, expires}``, and the Mongo-only vectors.

    A key with a TTL becomes ``expires`` = now + TTL (what connect-mongo's
    touch keeps); a key without one becomes a document without ``expires``,
    which connect-mongo's ``get`` finds too. The hash stored where a session
    belongs becomes an object without a cookie. User records go to the users
    collection by ``_id`` (JSON text decoded, hashes as they are); a record
    that is not an object cannot be a document and is left out (unknown, as
    the Redis store reads it).
    """
    now = datetime.now(UTC)
    sessions: list[dict[str, Any]] = []
    for session in corpus["sessions"]:
        value = session["value"] if session.get("type") != "hash" else dict(session["value"])
        document: dict[str, Any] = {"_id": session["sid"], "session": value}
        if session["ttl_s"] is not None:
            document["expires"] = now + timedelta(seconds=session["ttl_s"])
        sessions.append(document)
    template = corpus["settings"]["SESSIONVALIDATOR_USER_KEY"]
    head, _, tail = template.partition("{id}")
    users: list[dict[str, Any]] = []
    for user in corpus["users"]:
        record = dict(user["value"]) if user["type"] == "hash" else parse_json(user["value"].encode())
        if isinstance(record, dict):
            users.append({**record, "_id": user["key"].removeprefix(head).removesuffix(tail)})
    for session in MONGO_ONLY["sessions"]:
        document = {"_id": session["sid"], "session": session["session"]}
        if session["expires_in_s"] is not None:
            document["expires"] = now + timedelta(seconds=session["expires_in_s"])
        sessions.append(document)
    with server.client() as client:
        db = client[server.database]
        db["sessions"].drop()
        db[USERS].drop()
        db["sessions"].insert_many(sessions)
        if users:
            db[USERS].insert_many(users)
