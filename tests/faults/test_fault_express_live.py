"""The real Express app writes sessions while the validator is hammered with the same cookies.

For every validator answer the test asks: could the app itself have decided
this about the cookie at some moment during the call? The app's state for a
cookie is modelled as a timeline of allowed states, built from what the test
did through the app and when (each HTTP request's start and end):

* ``V(user)``: the session is stored (``user`` is the Passport user, or
  ``None`` when anonymous); ``M``: it is not (logged out, destroyed, expired).
* During a request that changes the cookie's session, both the old and the
  new state are allowed (the change lands somewhere inside the request).
* Expiry: with ``maxAge`` 1.5 s and ``rolling``, a request that writes or
  touches the session in ``[s, c]`` makes the key expire somewhere in
  ``[s + 1.5, c + 2]`` (connect-redis sets ``EX ceil((expires - now) / 1000)``
  with ``expires`` reset to ``now + 1.5`` during the request). Before that
  window the session is certainly there, after it certainly gone; inside it,
  either answer is allowed.

A call that lies inside one stable stretch must get exactly that state; a call
that overlaps a change may get either side, never anything else (VALID for a
cookie destroyed before the call began fails, as does a wrong user). The app's
own answers (``/whoami``, ``/anon``) are checked against the same timeline,
which keeps the model honest.
"""

from __future__ import annotations

import collections
import http.client
import json
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.faults.support import Outcome, call_once, internal_errors, new_channel
from tests.support.processes import ExpressApp, RedisServer, ValidatorProcess, running_validator

pytestmark = [pytest.mark.integration, pytest.mark.parity]

SIGNING = "faults: express writes while the validator reads, 32+ bytes"
MAX_AGE_S = 1.5
MARGIN_S = 0.1  # clocks (Python, Node, Redis), millisecond rounding
DRIVE_S = 5.0
HAMMERS = 3

State = tuple[str, str | None]  # ("V", user) or ("M", None)
MISSING: State = ("M", None)


def valid(user: str | None) -> State:
    return ("V", user)


@dataclass
class Track:
    """One cookie the app issued, and the timeline of what the app holds for it."""

    header: str
    sid: str
    born: float
    state: State
    alive_until: float  # certainly stored before this (unless changed by a request)
    gone_after: float  # certainly not stored after this
    keeper: bool  # touched regularly; otherwise left to expire
    tampered: str = ""
    pieces: list[tuple[float, float, frozenset[State]]] = field(default_factory=list)
    tail_from: float = 0.0
    last_touch: float = 0.0

    def __post_init__(self) -> None:
        self.tail_from = self.born
        head, last = self.header[:-1], self.header[-1]
        self.tampered = head + ("A" if last != "A" else "B")

    def _tail(self, start: float, end: float) -> list[tuple[float, float, frozenset[State]]]:
        """The provisional timeline after the last request, clipped to ``[start, end)``."""
        if self.state == MISSING:
            spans = [(self.tail_from, math.inf, frozenset({MISSING}))]
        else:
            spans = [
                (self.tail_from, self.alive_until, frozenset({self.state})),
                (self.alive_until, self.gone_after, frozenset({self.state, MISSING})),
                (self.gone_after, math.inf, frozenset({MISSING})),
            ]
        clipped = [(max(a, start, self.tail_from), min(b, end), states) for a, b, states in spans]
        return [(a, b, states) for a, b, states in clipped if a < b]

    def timeline(self) -> list[tuple[float, float, frozenset[State]]]:
        return [*self.pieces, *self._tail(self.tail_from, math.inf)]

    def allowed(self, start: float, end: float) -> frozenset[State]:
        """Every state the app may have held at some moment of ``[start, end]``."""
        states: frozenset[State] = frozenset()
        for a, b, piece in self.timeline():
            if a <= end and b > start:
                states |= piece
        return states

    def certainly_alive(self, at: float) -> bool:
        return self.state != MISSING and at < self.alive_until

    def certainly_gone(self, at: float) -> bool:
        return self.state == MISSING or at >= self.gone_after

    def apply(self, start: float, end: float, after: State, *, during: frozenset[State], refreshed: bool) -> None:
        """Record a request in ``[start, end]`` that leaves the cookie in ``after``.

        ``during``: states the request may pass through besides the old and
        new ones; ``refreshed``: the request certainly wrote or touched the key.
        """
        before = self._tail(self.tail_from, start)
        old = frozenset().union(*(states for _, _, states in self._tail(start, end))) or frozenset({self.state})
        self.pieces += [*before, (start, end, old | during | {after})]
        if after == MISSING:
            self.alive_until = self.gone_after = end
        elif refreshed:
            self.alive_until, self.gone_after = start + MAX_AGE_S - MARGIN_S, end + 2.0 + MARGIN_S
        else:  # a touch that may have come too late: stored or not, until the latest possible expiry
            self.alive_until, self.gone_after = min(self.alive_until, end), max(self.gone_after, end + 2.0 + MARGIN_S)
        self.state, self.tail_from = after, end


class App:
    """Requests to the real Express app, timed."""

    def __init__(self, app: ExpressApp) -> None:
        self.port = app.port

    def request(self, method: str, path: str, cookie: str | None = None, body: Any = None) -> tuple[Any, str | None]:
        """One HTTP request: (JSON body, the ``name=value`` of a Set-Cookie)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            payload = json.dumps(body).encode() if body is not None else b""
            headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
            if cookie:
                headers["Cookie"] = cookie
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = json.loads(response.read() or b"null")
            assert response.status == 200, (method, path, response.status, data)
            set_cookie = response.getheader("Set-Cookie")
            return data, set_cookie.split(";", 1)[0] if set_cookie else None
        finally:
            connection.close()


def sid_of(header: str) -> str:
    value = header.split("=", 1)[1].replace("%3A", ":")
    return value[2:].rsplit(".", 1)[0]


class Driver:
    """Drives the app through logins, visits, rolling touches, logouts, destroys and expiry."""

    def __init__(self, app: App, seed: int) -> None:
        self.app = app
        self.rng = random.Random(seed)
        self.tracks: list[Track] = []
        self.lock = threading.Lock()
        self.app_disagreements: list[str] = []
        self.users = 0
        self.ops: collections.Counter[str] = collections.Counter()

    def _issue(self, header: str | None, start: float, end: float, user: str | None, *, keeper: bool) -> None:
        assert header is not None
        track = Track(
            header, sid_of(header), end, valid(user), start + MAX_AGE_S - MARGIN_S, end + 2.0 + MARGIN_S, keeper
        )
        track.last_touch = start
        with self.lock:
            self.tracks.append(track)

    def _check_app(self, track: Track, start: float, end: float, seen: State, what: str) -> None:
        """The app's own answer must fit the timeline (else the model, not the validator, is wrong)."""
        if seen not in track.allowed(start, end):
            self.app_disagreements.append(
                f"{what} on {track.sid[:8]}: app saw {seen}, model {track.allowed(start, end)}"
            )

    def new_user(self) -> str:
        self.users += 1
        return f"user-{self.users}"

    def login(self, keeper: bool) -> None:
        user = self.new_user()
        start = time.monotonic()
        _, header = self.app.request("POST", "/login", body={"user": user})
        self._issue(header, start, time.monotonic(), user, keeper=keeper)
        self.ops["login"] += 1

    def anonymous(self, keeper: bool) -> None:
        start = time.monotonic()
        _, header = self.app.request("POST", "/anon")
        self._issue(header, start, time.monotonic(), None, keeper=keeper)
        self.ops["anon"] += 1

    def whoami(self, track: Track) -> None:
        """A read-only request: a rolling touch when the session is loaded."""
        start = time.monotonic()
        body, _ = self.app.request("GET", "/whoami", track.header)
        end = time.monotonic()
        seen = valid(body["user"] if body["authenticated"] else None) if body["loaded"] else MISSING
        if body["loaded"]:
            assert body["sessionID"] == track.sid
        self._check_app(track, start, end, seen, "whoami")
        was_alive = track.certainly_alive(end)
        track.apply(start, end, seen if seen == MISSING else track.state, during=frozenset(), refreshed=was_alive)
        track.last_touch = start
        self.ops["whoami"] += 1

    def visit(self, track: Track) -> None:
        """POST /anon with the cookie: modifies (saves) a loaded session, else starts a new one."""
        start = time.monotonic()
        body, header = self.app.request("POST", "/anon", track.header)
        end = time.monotonic()
        if body["sessionID"] == track.sid:
            self._check_app(track, start, end, track.state, "visit")
            track.apply(start, end, track.state, during=frozenset(), refreshed=True)  # SET, even if it had expired
            track.last_touch = start
        else:
            self._check_app(track, start, end, MISSING, "visit")
            track.apply(start, end, MISSING, during=frozenset(), refreshed=False)
            self._issue(header, start, end, None, keeper=True)
        self.ops["visit"] += 1

    def logout(self, track: Track) -> None:
        """Passport 0.7 saves the session without the user, then regenerates: a new anonymous cookie."""
        start = time.monotonic()
        _, header = self.app.request("POST", "/logout", track.header)
        end = time.monotonic()
        track.apply(start, end, MISSING, during=frozenset({valid(None)}), refreshed=False)
        self._issue(header, start, end, None, keeper=True)
        self.ops["logout"] += 1

    def upgrade(self, track: Track) -> None:
        """Logging in with an anonymous cookie regenerates the session: the old id is gone."""
        user = self.new_user()
        start = time.monotonic()
        _, header = self.app.request("POST", "/login", track.header, body={"user": user})
        end = time.monotonic()
        track.apply(start, end, MISSING, during=frozenset(), refreshed=False)
        self._issue(header, start, end, user, keeper=True)
        self.ops["upgrade"] += 1

    def destroy(self, track: Track) -> None:
        start = time.monotonic()
        self.app.request("POST", "/destroy", track.header)
        track.apply(start, time.monotonic(), MISSING, during=frozenset(), refreshed=False)
        self.ops["destroy"] += 1

    def step(self) -> None:
        now = time.monotonic()
        # Rolling touches keep the keepers alive, well before their earliest expiry.
        for track in list(self.tracks):
            if track.keeper and track.certainly_alive(now + 0.4) and now - track.last_touch > 0.5:
                self.whoami(track)
        now = time.monotonic()
        alive = [t for t in self.tracks if t.keeper and t.certainly_alive(now + 0.3)]
        users = [t for t in alive if t.state[1] is not None]
        anonymous = [t for t in alive if t.state[1] is None]
        live = sum(1 for t in self.tracks if not t.certainly_gone(now))
        roll = self.rng.random()
        if roll < 0.25 and live < 14:
            (self.login if self.rng.random() < 0.6 else self.anonymous)(keeper=self.rng.random() < 0.6)
        elif roll < 0.4 and anonymous:
            self.visit(self.rng.choice(anonymous))
        elif roll < 0.55 and users:
            self.logout(self.rng.choice(users))
        elif roll < 0.65 and anonymous:
            self.upgrade(self.rng.choice(anonymous))
        elif roll < 0.75 and alive:
            self.destroy(self.rng.choice(alive))
        elif roll < 0.85 and (gone := [t for t in self.tracks if t.certainly_gone(now)]):
            self.whoami(self.rng.choice(gone))  # the app, too, must find nothing
        else:
            time.sleep(0.02)


def hammer(address: str, driver: Driver, stop: threading.Event, seed: int, results: list[tuple[int, Outcome]]) -> None:
    """Ask the validator about the live cookies (and forged copies) as fast as is polite."""
    rng = random.Random(seed)
    with new_channel(address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        while not stop.is_set():
            with driver.lock:
                tracks = list(enumerate(driver.tracks))
            if not tracks:
                time.sleep(0.01)
                continue
            # Mostly cookies that may still be live (the driver changes them as we go: this is only a
            # preference), sometimes any cookie, dead ones included.
            now = time.monotonic()
            live = [(i, t) for i, t in tracks if not t.certainly_gone(now)]
            index, track = rng.choice(live if live and rng.random() < 0.7 else tracks)
            forged = rng.random() < 0.1
            header = track.tampered if forged else track.header
            outcome = call_once(
                stub, "forged" if forged else "cookie", pb.ValidateSessionRequest(cookie_header_text=header), 5.0
            )
            results.append((index, outcome))
            time.sleep(0.002)


def answer_state(track: Track, outcome: Outcome) -> State | str:
    """The state a validator answer claims, or why it is no possible answer at all."""
    if outcome.code is not None:
        return f"error {outcome.code} {outcome.error_reason}"
    if outcome.key == "forged":
        ok = (outcome.verdict, outcome.reason) == (pb.VERDICT_BAD_SIGNATURE, pb.REASON_SIGNATURE_MISMATCH)
        answered = pb.Verdict.Name(outcome.verdict or pb.VERDICT_UNSPECIFIED)
        return "forged ok" if ok else f"forged cookie answered {answered}"
    if outcome.session_id != track.sid:
        return f"session id {outcome.session_id!r} for {track.sid!r}"
    if (outcome.verdict, outcome.reason) == (pb.VERDICT_VALID, pb.REASON_SESSION_ACTIVE):
        return valid(outcome.user_id if outcome.authenticated else None)
    if (outcome.verdict, outcome.reason) == (pb.VERDICT_MISSING, pb.REASON_SESSION_NOT_FOUND):
        return MISSING
    verdict = pb.Verdict.Name(outcome.verdict or pb.VERDICT_UNSPECIFIED)
    return f"{verdict}/{pb.Reason.Name(outcome.reason or pb.REASON_UNSPECIFIED)}"


@pytest.fixture
def app_and_validator(redis_server: RedisServer) -> Iterator[tuple[App, ValidatorProcess]]:
    express = ExpressApp(redis_server.url, [SIGNING], PARITY_ROLLING="1", PARITY_MAX_AGE_MS=str(int(MAX_AGE_S * 1000)))
    express.start()
    try:
        env = {
            "SESSIONVALIDATOR_SECRETS": json.dumps([SIGNING]),
            "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
            "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "1000",  # a busy shared machine is not what this test is about
            "SESSIONVALIDATOR_RATE_LIMIT": "off",  # the forged copies come from one peer
        }
        with running_validator(env) as validator:
            yield App(express), validator
    finally:
        express.close()


def test_validator_agrees_with_the_express_app_while_it_writes(app_and_validator: tuple[App, ValidatorProcess]) -> None:
    app, validator = app_and_validator
    driver = Driver(app, seed=20261122)
    stop = threading.Event()
    results: list[tuple[int, Outcome]] = []
    threads = [
        threading.Thread(target=hammer, args=(validator.address, driver, stop, i, results), daemon=True)
        for i in range(HAMMERS)
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + DRIVE_S
        while time.monotonic() < deadline:
            driver.step()
        # Let the last cookies settle (expire or not) under the hammer, then look at all of it.
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)

    assert driver.app_disagreements == [], "the timeline model disagrees with the app itself"
    wrong: list[str] = []
    strict = collections.Counter[str]()
    raced = 0
    for index, outcome in results:
        track = driver.tracks[index]
        claimed = answer_state(track, outcome)
        if claimed == "forged ok":
            strict["forged"] += 1
            continue
        allowed = track.allowed(outcome.started, outcome.ended)
        if isinstance(claimed, str) or claimed not in allowed:
            wrong.append(
                f"{track.sid[:8]} [{outcome.started:.3f}, {outcome.ended:.3f}]: {claimed}, allowed {set(allowed)}"
            )
        elif len(allowed) == 1:
            strict["valid" if claimed[0] == "V" else "missing"] += 1
        else:
            raced += 1
    expired = sum(
        1 for t in driver.tracks if not t.keeper and t.state != MISSING and t.certainly_gone(time.monotonic())
    )
    print(
        f"\napp requests {dict(driver.ops)}; cookies {len(driver.tracks)} ({expired} expired by TTL); "
        f"validator calls {len(results)}: checked strictly {dict(strict)}, overlapping a change {raced}"
    )
    assert wrong == [], f"{len(wrong)} answers no moment of the app's state allows, e.g. {wrong[:5]}"
    assert validator.proc is not None
    assert validator.proc.poll() is None
    assert internal_errors(validator) == []
    # The run exercised what it claims to: every kind of change, answers on both sides, real expiry.
    assert min(driver.ops[op] for op in ("login", "anon", "whoami", "visit", "logout", "upgrade", "destroy")) >= 2
    assert strict["valid"] >= 100
    assert strict["missing"] >= 50
    assert strict["forged"] >= 20
    assert expired >= 2
