"""The MongoDB session store: connect-mongo's document schema, read through pymongo.

connect-mongo 5 and 6 (``src/lib/MongoStore.ts``) keep one document per
session in ``collectionName`` (default ``sessions``)::

    {_id: <sid>, expires: <Date>, session: <JSON text | object>, lastModified?: <Date>}

``session`` is ``JSON.stringify(session)`` with the default ``stringify: true``
and the session object itself with ``stringify: false``. ``get`` finds
``{_id: sid, $or: [{expires: {$exists: false}}, {expires: {$gt: new Date()}}]}``,
so a document whose ``expires`` has passed is expired even while the TTL index
(``autoRemove: 'native'``) or the interval sweep has not removed it yet, and a
document whose ``expires`` is there but not a Date is never found.

This module reads every session of a call with one ``find({_id: {$in: ...}})``,
as raw BSON: the size of ``session`` is known before anything is decoded, the
JSON text is handed on as the UTF-8 bytes connect-redis would hand on, and an
object is decoded into JSON-like values (Dates as ``Date.toJSON`` text,
ObjectIds as their hex, as ``JSON.stringify`` renders them).

A session encrypted with connect-mongo's ``crypto`` option or a
``cryptoAdapter`` (kruptein: base64 of ASN.1; Web Crypto: base64, base64url
or hex of IV + ciphertext) cannot be read without the app's secret: such a
``session`` string is answered ``unusable="encrypted"``, never parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlsplit

import bson
import orjson
import pymongo
import pymongo.errors
from bson.codec_options import CodecOptions
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.common import URI_OPTIONS_VALIDATOR_MAP
from pymongo.server_type import SERVER_TYPE
from pymongo.uri_parser_shared import _validate_uri

from sessionvalidator_service.stores import (
    ABSENT,
    SessionStore,
    StoredSession,
    StoreOptions,
    StoreTimeoutError,
    StoreUnavailableError,
    UserRecordData,
)

log = logging.getLogger("sessionvalidator.store.mongo")

__all__ = ["DEFAULT_DATABASE", "MongoSessionStore", "check_mongo_url", "mongo_database"]

# The Node driver's (and so connect-mongo's) database when the URL names none.
DEFAULT_DATABASE: Final = "test"
# connect-mongo's default `ttl` (14 days), used when a minted session has no expiry.
_CONNECT_MONGO_TTL_S: Final = 1209600
_RAW: Final = CodecOptions(document_class=RawBSONDocument, tz_aware=True, tzinfo=UTC)
_DECODE: Final[CodecOptions[dict[str, Any]]] = CodecOptions(tz_aware=True, tzinfo=UTC)
# What an encrypted `session` string looks like (see the module docstring).
_CIPHERTEXT: Final = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
# What JSON.parse(undefined) reads (String(undefined)): it throws, so the session is corrupt.
_UNPARSABLE: Final = b"undefined"
_INT32: Final = struct.Struct("<i")
_INT64: Final = struct.Struct("<q")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
_EARLIEST: Final = datetime(1, 1, 1, tzinfo=UTC)
_BSON_STRING: Final = 0x02
_BSON_DOCUMENT: Final = 0x03
_BSON_DATE: Final = 0x09
_BSON_BINARY: Final = 0x05
_BSON_REGEX: Final = 0x0B
_BSON_DBPOINTER: Final = 0x0C
_STRING_TYPES: Final = frozenset({_BSON_STRING, 0x0D, 0x0E})  # string, JavaScript code, symbol
_SIZED_TYPES: Final = frozenset({_BSON_DOCUMENT, 0x04, 0x0F})  # document, array, code with scope
# double, undefined, ObjectId, boolean, Date, null, int32, Timestamp, int64, Decimal128, min key, max key
_FIXED_SIZES: Final = {
    0x01: 8,
    0x06: 0,
    0x07: 12,
    0x08: 1,
    0x09: 8,
    0x0A: 0,
    0x10: 4,
    0x11: 8,
    0x12: 8,
    0x13: 16,
    0xFF: 0,
    0x7F: 0,
}
_HEX_ID: Final = re.compile(r"[0-9a-fA-F]{24}")
_DECIMAL_ID: Final = re.compile(r"-?[0-9]{1,18}")


def _parse_url(url: str) -> dict[str, Any]:
    """Validate a MongoDB URL without any network (no SRV lookup); raise ValueError."""
    try:
        return _validate_uri(url, warn=False)
    except (pymongo.errors.PyMongoError, ValueError, TypeError) as exc:
        message = str(exc)
        if message.startswith("Unknown option"):  # pymongo does not say which
            query = parse_qsl(urlsplit(url).query)
            names = [name for name, _ in query if name.lower() not in URI_OPTIONS_VALIDATOR_MAP]
            message = f"unknown option {', '.join(map(repr, names))}" if names else message
        # Never echo a password: pymongo's messages do not, but be sure.
        _, _, rest = url.partition("://")
        userinfo, at, _ = rest.rpartition("@")
        if at and ":" in userinfo:
            message = message.replace(userinfo.partition(":")[2], "***")
        raise ValueError(message) from None


def check_mongo_url(url: str) -> None:
    """Raise :class:`ValueError` naming what is wrong with a ``mongodb[+srv]://`` URL (never its password)."""
    parsed = _parse_url(url)
    if parsed.get("collection"):
        raise ValueError(
            "the URL path names a database only (connect-mongo's mongoUrl); "
            "set the collection with SESSIONVALIDATOR_MONGO_COLLECTION"
        )


def mongo_database(url: str) -> str:
    """Return the database a URL names, as connect-mongo's ``mongoUrl`` picks it (``test`` when none)."""
    return str(_parse_url(url).get("database") or DEFAULT_DATABASE)


def _date(millis: int) -> datetime:
    """Read a BSON Date (milliseconds since the epoch) as an aware datetime, clamped to what Python holds."""
    try:
        return _EPOCH + timedelta(milliseconds=millis)
    except OverflowError:
        return _LATEST if millis > 0 else _EARLIEST


def _elements(raw: bytes) -> dict[str, tuple[int, int, int]]:
    """Find the top-level elements of a BSON document: name -> (type, value start, value end).

    Sizes every BSON type without decoding any value; the first of a
    repeated name wins, as the server's own field lookup does.
    """
    out: dict[str, tuple[int, int, int]] = {}
    pos, end = 4, len(raw) - 1
    while pos < end:
        kind = raw[pos]
        name_end = raw.index(b"\x00", pos + 1)
        name = raw[pos + 1 : name_end].decode("utf-8", "replace")
        start = name_end + 1
        if kind in _STRING_TYPES:
            stop = start + 4 + _INT32.unpack_from(raw, start)[0]
        elif kind in _SIZED_TYPES:  # document, array, code with scope: the length includes itself
            stop = start + _INT32.unpack_from(raw, start)[0]
        elif kind == _BSON_BINARY:
            stop = start + 5 + _INT32.unpack_from(raw, start)[0]
        elif kind == _BSON_REGEX:
            stop = raw.index(b"\x00", raw.index(b"\x00", start) + 1) + 1
        elif kind == _BSON_DBPOINTER:
            stop = start + 4 + _INT32.unpack_from(raw, start)[0] + 12
        elif kind in _FIXED_SIZES:
            stop = start + _FIXED_SIZES[kind]
        else:
            msg = f"unknown BSON type {kind:#x}"
            raise ValueError(msg)
        out.setdefault(name, (kind, start, stop))
        pos = stop
    return out


def _json_like(value: Any) -> Any:
    """Render a decoded BSON value as ``JSON.stringify`` then ``JSON.parse`` would leave it."""
    if isinstance(value, Mapping):
        return {str(k): _json_like(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_like(v) for v in value]
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, bson.int64.Int64):
        return int(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # Decimal128, Binary, Regex, ...: their text, never a crash


def _by_id(keys: Sequence[Any]) -> dict[str, Any]:
    """Filter on ``_id``: equality for one key, ``$in`` for several.

    Both use the ``_id`` index on MongoDB; FerretDB's SQLite backend (the
    tests' server) filters equality in SQLite but ``$in`` in Go, row by row,
    about ten times slower on a few thousand sessions.
    """
    return {"_id": keys[0]} if len(keys) == 1 else {"_id": {"$in": list(keys)}}


def _is_ciphertext(text: bytes) -> bool:
    """Whether a ``session`` string is connect-mongo ``crypto`` output rather than JSON."""
    return bool(_CIPHERTEXT.fullmatch(text.decode("ascii", "replace")))


class MongoSessionStore(SessionStore):
    """Reads connect-mongo sessions (and user records) from MongoDB, with a hard timeout."""

    def __init__(self, client: AsyncMongoClient[Any], database: str, options: StoreOptions) -> None:
        self._client = client
        self._options = options
        self._timeout = options.timeout_s
        db = client.get_database(database, codec_options=_RAW)
        self._sessions = db.get_collection(options.mongo_collection)
        self._users = (
            db.get_collection(options.mongo_users_collection, codec_options=_DECODE)
            if options.mongo_users_collection
            else None
        )
        self._db = db

    @classmethod
    def from_url(cls, url: str, options: StoreOptions) -> Self:
        """Build a store over a pooled client for ``url`` (nothing connects until the first call)."""
        database = mongo_database(url)
        timeout_ms = max(1, round(options.timeout_s * 1000))
        client: AsyncMongoClient[Any] = AsyncMongoClient(
            url,
            connect=False,
            # Every wait of a call counts against the store timeout: the
            # driver's defaults would wait 30 s for a server, and forever
            # for a pooled connection.
            timeoutMS=timeout_ms,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=max(timeout_ms, 1000),
            waitQueueTimeoutMS=timeout_ms,
            maxPoolSize=options.max_connections,
            # The fastest the driver re-checks a server it lost (minimum 500 ms).
            heartbeatFrequencyMS=500,
            retryReads=False,
            appname="sessionvalidator",
            tz_aware=True,
        )
        return cls(client, database, options)

    @property
    def has_user_records(self) -> bool:
        """Whether scalar Passport ids are looked up in the users collection."""
        return self._users is not None

    @property
    def coalescable(self) -> bool:
        """Concurrent lookups may share one ``find``."""
        return True

    async def _call(self, operation: Any, timeout_s: float | None = None) -> Any:
        """Run one driver call within the store timeout, mapping failures to store errors.

        When the driver's monitor already found every server down (a refused
        or dropped connection), fail at once instead of waiting out server
        selection: callers get UNAVAILABLE as fast as from a refused Redis, and
        readiness follows a dead server within about half a second. The
        monitor re-checks every 500 ms (at once after an error), so a server
        that comes back is used again within that.
        """
        servers = self._client.topology_description.server_descriptions().values()
        if servers and all(s.server_type == SERVER_TYPE.Unknown and s.error is not None for s in servers):
            raise StoreUnavailableError("no MongoDB server reachable")
        timeout = self._timeout if timeout_s is None else timeout_s
        try:
            # pymongo's own timeout (CSOT) covers server selection, the
            # connection pool and the round trip; asyncio's is the backstop.
            with pymongo.timeout(timeout):
                async with asyncio.timeout(timeout + 0.05):
                    return await operation()
        except TimeoutError as exc:
            raise StoreTimeoutError("store timeout") from exc
        except pymongo.errors.PyMongoError as exc:
            if exc.timeout:
                raise StoreTimeoutError(exc.__class__.__name__) from exc
            raise StoreUnavailableError(exc.__class__.__name__) from exc
        except OSError as exc:
            raise StoreUnavailableError(exc.__class__.__name__) from exc
        except Exception as exc:
            # The driver failing in some other way is still the store
            # failing: UNAVAILABLE, never INTERNAL (traceback logged).
            log.warning(
                "session store client failed unexpectedly",
                exc_info=True,
                extra={"event": "store_client_error", "error": exc.__class__.__name__},
            )
            raise StoreUnavailableError(exc.__class__.__name__) from exc

    async def get_sessions(self, session_ids: Sequence[str]) -> list[StoredSession]:
        """Read every session with one ``find`` (``{_id: sid}``, or ``{_id: {$in: [...]}}`` for several)."""
        if not session_ids:
            return []
        wanted = list(dict.fromkeys(session_ids))

        async def find() -> list[RawBSONDocument]:
            cursor = self._sessions.find(_by_id(wanted), batch_size=len(wanted) + 1)
            return await cursor.to_list(None)

        documents = await self._call(find)
        found: dict[str, StoredSession] = {}
        for document in documents:
            raw = bytes(document.raw)  # a memoryview for large batches
            try:
                fields = _elements(raw)
            except (ValueError, struct.error):  # not BSON the server would send
                continue
            key = fields.get("_id")
            if key is None or key[0] != _BSON_STRING:
                continue
            _, start, stop = key
            sid = raw[start + 4 : stop - 1].decode("utf-8", "replace")
            found[sid] = self._session(raw, fields)
        return [found.get(sid, ABSENT) for sid in session_ids]

    def _session(self, raw: bytes, fields: Mapping[str, tuple[int, int, int]]) -> StoredSession:
        stored = self._read_session(raw, fields)
        if stored.unusable is not None and stored.expires is not None and stored.expires <= datetime.now(UTC):
            # connect-mongo would not find it at all: expired, whatever it holds.
            return StoredSession(_UNPARSABLE, expires=stored.expires)
        return stored

    def _read_session(self, raw: bytes, fields: Mapping[str, tuple[int, int, int]]) -> StoredSession:
        expires_field = fields.get("expires")
        expires: datetime | None = None
        if expires_field is not None:
            kind, start, _ = expires_field
            if kind != _BSON_DATE:
                # connect-mongo's query compares expires with a Date: a
                # null, string or number never matches, so get finds nothing.
                return ABSENT
            expires = _date(_INT64.unpack_from(raw, start)[0])
        session = fields.get("session")
        if session is None:
            # JSON.parse(undefined) throws: express-session answers 500.
            return StoredSession(_UNPARSABLE, expires=expires)
        kind, start, stop = session
        if kind == _BSON_STRING:
            text = raw[start + 4 : stop - 1]
            if len(text) > self._options.max_session_bytes:
                return StoredSession(None, expires=expires, unusable="too_large")
            if _is_ciphertext(text):
                return StoredSession(None, expires=expires, unusable="encrypted")
            # JSON.parse('') throws as JSON.parse(undefined) does.
            return StoredSession(text or _UNPARSABLE, expires=expires)
        if stop - start > self._options.max_session_bytes:
            return StoredSession(None, expires=expires, unusable="too_large")
        if kind == _BSON_DOCUMENT:
            try:
                decoded = bson.decode(raw[start:stop], codec_options=_DECODE)
            except (bson.errors.BSONError, ValueError, OverflowError):
                return StoredSession(_UNPARSABLE, expires=expires)
            # An empty object is still a (cookie-less, so corrupt) session, not none.
            return StoredSession(_json_like(decoded) or b"{}", expires=expires)
        # A number, array, boolean, null...: the JSON text of what JSON.parse would make of it.
        try:
            value = bson.decode(raw, codec_options=_DECODE).get("session")
            return StoredSession(orjson.dumps(_json_like(value)), expires=expires)
        except (bson.errors.BSONError, ValueError, OverflowError, TypeError, orjson.JSONEncodeError):
            return StoredSession(_UNPARSABLE, expires=expires)

    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecordData | None]:
        """Read user records by ``_id`` in one ``find``: the id as given, a 24-hex id as an ObjectId too."""
        users = self._users
        if users is None or not user_ids:
            return [None] * len(user_ids)
        keys: list[Any] = []
        for user_id in dict.fromkeys(user_ids):
            keys.append(user_id)
            if _HEX_ID.fullmatch(user_id):
                keys.append(ObjectId(user_id))
            elif _DECIMAL_ID.fullmatch(user_id) and str(int(user_id)) == user_id:
                keys.append(int(user_id))

        async def find() -> list[Mapping[str, Any]]:
            cursor = users.find(_by_id(keys), batch_size=len(keys) + 1)
            return await cursor.to_list(None)

        records: dict[Any, Mapping[str, Any]] = {}
        for document in await self._call(find):
            with contextlib.suppress(TypeError):  # an unhashable _id is nobody's record
                records[document["_id"]] = document

        def lookup(user_id: str) -> UserRecordData | None:
            record = records.get(user_id)
            if record is None and _HEX_ID.fullmatch(user_id):
                record = records.get(ObjectId(user_id))
            if record is None and _DECIMAL_ID.fullmatch(user_id) and str(int(user_id)) == user_id:
                record = records.get(int(user_id))
            return None if record is None else _json_like(record)

        return [lookup(user_id) for user_id in user_ids]

    async def ping(self, timeout_s: float | None = None) -> None:
        """Return when the server answers ``ping`` in time; raise a store error otherwise."""
        await self._call(lambda: self._db.command("ping"), timeout_s)

    async def write_session(self, session_id: str, session_json: str, *, ttl_s: int | None) -> None:
        """Write a session as connect-mongo's ``set`` does (``stringify: true``, no ``crypto``).

        ``expires`` is ``cookie.expires`` when the session has one, else now
        plus connect-mongo's ``ttl`` (``ttl_s`` when given, its 14-day default otherwise).
        """
        from sessionvalidator_service.jsemu import parse_json

        session = parse_json(session_json.encode("utf-8"))
        cookie = session.get("cookie") if isinstance(session, dict) else None
        cookie_expires = cookie.get("expires") if isinstance(cookie, dict) else None
        expires: datetime
        if isinstance(cookie_expires, str) and cookie_expires:
            expires = datetime.fromisoformat(cookie_expires).astimezone(UTC)
        else:
            expires = datetime.now(UTC) + timedelta(seconds=_CONNECT_MONGO_TTL_S if ttl_s is None else ttl_s)
        # BSON Dates hold milliseconds, as JavaScript's do.
        expires = expires.replace(microsecond=expires.microsecond // 1000 * 1000)
        document = {"_id": session_id, "session": session_json, "expires": expires}
        collection = self._sessions.with_options(codec_options=_DECODE)
        await self._call(lambda: collection.update_one({"_id": session_id}, {"$set": document}, upsert=True))

    async def aclose(self) -> None:
        """Close every pooled connection and the server monitors."""
        await self._client.close()
