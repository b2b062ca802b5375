"""Batches of many users' cookies, and what each item must be answered: the model behind the batch property tests.

One home for the in-process, Redis and MongoDB batch properties
(tests/fast/test_inprocess_batches.py, tests/integration/test_batch_properties.py,
tests/mongo/test_mongo_batches.py). Each example mints a population of sessions of
distinct users (a user object in the session, a scalar Passport id completed by a user
record, or no user at all), warms some into the session cache, destroys some, and
draws a batch of their cookies, forged ones, ones never stored and malformed ones, with
duplicates. Every item is checked against its own cookie: its verdict, reason, session
id and user (id and username, which for a scalar id comes from the user record), so an
answer that belongs to another item of the same batch is seen.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Self

import grpc
from hypothesis import strategies as st

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.mint import encode_uri_component, mint_session, new_session_id
from sessionvalidator_service.signature import Signer
from tests.conftest import load_vectors

SETTINGS = load_vectors("validate_session.json")["settings"]
COOKIE_NAME = SETTINGS["SESSIONVALIDATOR_COOKIE_NAME"]
SIGNER = Signer(json.loads(SETTINGS["SESSIONVALIDATOR_SECRETS"]))
# Long enough to pass for a real secret; the service does not know it.
FORGER = Signer(["a secret the service never had, comfortably over 32 bytes"])

UserKind = Literal["object", "record", "anonymous"]
# Drawn for each account: sessions holding a user object are the commonest.
USER_KINDS: tuple[UserKind, ...] = ("object", "object", "record", "anonymous")


def header(value: str) -> pb.ValidateSessionRequest:
    return pb.ValidateSessionRequest(cookie_header_text=f"{COOKIE_NAME}={value}")


@dataclass(frozen=True, slots=True)
class Expected:
    """What one item must be answered. ``users``: the (id, username) pairs allowed; empty: not authenticated."""

    verdict: pb.Verdict.ValueType
    reason: pb.Reason.ValueType
    session_id: str = ""
    users: frozenset[tuple[str, str]] = frozenset()

    def wrong(self, response: pb.ValidateSessionResponse) -> str | None:
        """Why ``response`` is not this item's answer, or ``None``."""
        if response.HasField("error"):
            return f"refused: {response.error}"
        user = (response.user.id, response.user.username) if response.HasField("user") else None
        if (response.verdict, response.reason, response.session_id) != (self.verdict, self.reason, self.session_id):
            return (
                f"got {pb.Verdict.Name(response.verdict)}/{pb.Reason.Name(response.reason)} for "
                f"{response.session_id!r}, expected {pb.Verdict.Name(self.verdict)}/{pb.Reason.Name(self.reason)} "
                f"for {self.session_id!r} (user {user})"
            )
        if response.authenticated != bool(self.users) or (self.users and user not in self.users):
            return f"session {self.session_id!r}: got user {user}, expected one of {sorted(self.users)}"
        return None


# Cookies the cookie alone decides: (value after `connect.sid=`, verdict, reason). An empty
# signature on a real session id is among them: it must never reach the store.
MALFORMED: tuple[tuple[str, pb.Verdict.ValueType, pb.Reason.ValueType], ...] = (
    ("abc", pb.VERDICT_MALFORMED, pb.REASON_NOT_SIGNED),
    ("", pb.VERDICT_MISSING, pb.REASON_EMPTY_VALUE),
    ("s%3Aabc", pb.VERDICT_BAD_SIGNATURE, pb.REASON_SIGNATURE_MISMATCH),
    ("%E0%A4%A", pb.VERDICT_MALFORMED, pb.REASON_NOT_SIGNED),
)


@dataclass
class Account:
    """One user's session, as the app wrote it. A rewrite (another generation) keeps the session id and
    changes the user, as a login on a live session does."""

    tag: str
    kind: UserKind
    session_id: str = field(default_factory=new_session_id)

    def user(self, generation: int) -> tuple[str, str]:
        """The (id, username) of this generation's user."""
        user_id = f"{self.tag}-g{generation}"
        return user_id, f"name of {user_id}"

    def stored_json(self, generation: int) -> str:
        """``JSON.stringify(req.session)`` for this generation."""
        user_id, username = self.user(generation)
        if self.kind == "anonymous":
            return mint_session(SIGNER, max_age_s=3600, session_id=self.session_id).stored_json
        # A scalar id is what Passport's serializeUser returned; the user record holds the rest.
        user = {"id": user_id, "username": username} if self.kind == "object" else user_id
        return mint_session(SIGNER, user=user, max_age_s=3600, session_id=self.session_id).stored_json

    def record(self, generation: int) -> tuple[str, dict[str, str]] | None:
        """The user record a scalar Passport id is completed with: (user id, record)."""
        user_id, username = self.user(generation)
        return (user_id, {"username": username}) if self.kind == "record" else None

    @property
    def cookie(self) -> pb.ValidateSessionRequest:
        return header(encode_uri_component("s:" + SIGNER.sign(self.session_id)))

    def live(self, generations: Sequence[int]) -> Expected:
        users = frozenset() if self.kind == "anonymous" else frozenset(self.user(g) for g in generations)
        return Expected(pb.VERDICT_VALID, pb.REASON_SESSION_ACTIVE, self.session_id, users)


# One item of a batch: what to send (by kind and account index) is drawn; its answer follows from the kind
# and from what happened to the account ("session": its own cookie, live, rewritten or destroyed).
ItemKind = Literal["session", "never_stored", "forged", "empty_signature", "malformed"]
ITEM_KINDS: tuple[ItemKind, ...] = ("session", "session", "session", "never_stored", "forged", "empty_signature")


@dataclass(frozen=True)
class Plan:
    """One example: the population and what happens to it, and the batch."""

    kinds: list[UserKind]
    warm: list[bool]  # read once before the batch (a cache hit in it, while the entry lasts)
    destroyed: list[bool]  # req.session.destroy() before the batch (after the warm-up)
    churn: list[bool]  # rewritten again and again while the batch runs
    items: list[tuple[ItemKind, int]]


@st.composite
def plans(draw: st.DrawFn, max_accounts: int = 12, max_items: int = 40) -> Plan:
    count = draw(st.integers(2, max_accounts))
    flags = st.lists(st.booleans(), min_size=count, max_size=count)
    kinds = draw(st.lists(st.sampled_from(USER_KINDS), min_size=count, max_size=count))
    item = st.tuples(st.sampled_from((*ITEM_KINDS, "malformed")), st.integers(0, count - 1))
    return Plan(
        kinds,
        draw(flags),
        draw(flags),
        draw(flags),
        draw(st.lists(item, min_size=2, max_size=max_items)),
    )


# One fixed batch that both hits and misses the cache, for different users (tests check the counts): 12 sessions,
# the even ones warmed, 4 and 9 destroyed, all asked for in reverse order plus a duplicate, a forged and a
# malformed cookie. Warmed and live (0, 2, 6, 8, 10) are hits; the others and the destroyed 4 (evicted) misses.
MIXED_PLAN = Plan(
    kinds=["object", "record", "anonymous"] * 4,
    warm=[i % 2 == 0 for i in range(12)],
    destroyed=[i % 5 == 4 for i in range(12)],
    churn=[False] * 12,
    items=[("session", i) for i in reversed(range(12))] + [("session", 3), ("forged", 2), ("malformed", 1)],
)
MIXED_HITS_AND_MISSES = (5, 7)


@dataclass
class Batch:
    """A plan made concrete: the accounts, and the requests in order."""

    plan: Plan
    accounts: list[Account]
    requests: list[pb.ValidateSessionRequest]
    items: list[tuple[ItemKind, int, str]]  # kind, account, the session id a never-stored cookie names

    def expected(self, *, churning: bool) -> list[Expected]:
        """Each item's answer; while ``churning``, a rewritten session may be answered for either generation."""
        return [self._expect(kind, index, session_id, churning) for kind, index, session_id in self.items]

    def _expect(self, kind: ItemKind, index: int, session_id: str, churning: bool) -> Expected:
        plan, account = self.plan, self.accounts[index]
        if kind == "session":
            if plan.destroyed[index]:
                # Whatever was cached: a logout must not be served.
                return Expected(pb.VERDICT_MISSING, pb.REASON_SESSION_NOT_FOUND, account.session_id)
            return account.live([0, 1] if churning and plan.churn[index] else [0])
        if kind == "never_stored":
            return Expected(pb.VERDICT_MISSING, pb.REASON_SESSION_NOT_FOUND, session_id)
        if kind in {"forged", "empty_signature"}:
            return Expected(pb.VERDICT_BAD_SIGNATURE, pb.REASON_SIGNATURE_MISMATCH)
        _, verdict, reason = MALFORMED[index % len(MALFORMED)]
        return Expected(verdict, reason)


def make_batch(plan: Plan, tag: str) -> Batch:
    accounts = [Account(f"{tag}-{i}", kind) for i, kind in enumerate(plan.kinds)]
    never_stored: dict[int, str] = {}
    requests: list[pb.ValidateSessionRequest] = []
    items: list[tuple[ItemKind, int, str]] = []
    for kind, index in plan.items:
        session_id = accounts[index].session_id
        if kind == "session":
            request = accounts[index].cookie
        elif kind == "never_stored":
            session_id = never_stored.setdefault(index, new_session_id())
            request = header(encode_uri_component("s:" + SIGNER.sign(session_id)))
        elif kind == "forged":
            request = header(encode_uri_component("s:" + FORGER.sign(session_id)))
        elif kind == "empty_signature":
            request = header(encode_uri_component("s:" + session_id + "."))
        else:
            request = header(MALFORMED[index % len(MALFORMED)][0])
        requests.append(request)
        items.append((kind, index, session_id))
    return Batch(plan, accounts, requests, items)


def wrong_items(expected: Sequence[Expected], responses: Sequence[pb.ValidateSessionResponse]) -> list[str]:
    """Every item answered other than its own cookie says, by index."""
    if len(responses) != len(expected):
        return [f"{len(responses)} answers to {len(expected)} items"]
    return [
        f"item {index}: {problem}"
        for index, (want, response) in enumerate(zip(expected, responses, strict=True))
        if (problem := want.wrong(response)) is not None
    ]


class Store:
    """What a test does to the store the service reads: as the Express app would."""

    def write(self, account: Account, generation: int) -> None:
        raise NotImplementedError

    def destroy(self, account: Account) -> None:
        raise NotImplementedError

    def settle(self, stub: pb_grpc.SessionValidatorStub) -> None:
        """Return once the service has seen every change made so far (a cache's invalidations)."""


class Background:
    """While a batch runs: single calls checked as they come back, and churning sessions rewritten."""

    def __init__(
        self,
        stub: pb_grpc.SessionValidatorStub,
        store: Store,
        batch: Batch,
        plan: Plan,
    ) -> None:
        self._stub = stub
        self._store = store
        self._batch = batch
        self._plan = plan
        self._stop = threading.Event()
        self.problems: list[str] = []
        self.calls = 0
        self.rewrites = 0
        self._threads = [threading.Thread(target=self._singles), threading.Thread(target=self._rewrites)]

    def _singles(self) -> None:
        pairs = list(zip(self._batch.requests, self._batch.expected(churning=True), strict=True))
        while not self._stop.is_set():
            for request, expected in pairs:
                try:
                    response = self._stub.ValidateSession(request, timeout=10)
                except grpc.RpcError as exc:
                    self.problems.append(f"single call failed: {exc.code()}")
                    return
                self.calls += 1
                if (problem := expected.wrong(response)) is not None:
                    self.problems.append(f"single call: {problem}")
                if self._stop.is_set():
                    return

    def _rewrites(self) -> None:
        churning = [
            a for i, a in enumerate(self._batch.accounts) if self._plan.churn[i] and not self._plan.destroyed[i]
        ]
        generation = 0
        while churning and not self._stop.is_set():
            generation ^= 1
            for account in churning:
                self._store.write(account, generation)
                self.rewrites += 1

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def run_plan(
    stub: pb_grpc.SessionValidatorStub,
    store: Store,
    plan: Plan,
    tag: str,
    *,
    rounds: int = 3,
    on_batch: Callable[[Batch], None] | None = None,
) -> list[str]:
    """Write the population, warm and destroy as planned, then send the batch ``rounds`` times beside
    concurrent single calls and rewrites. Returns every wrong answer."""
    batch = make_batch(plan, tag)
    for account in batch.accounts:
        store.write(account, 0)
    store.settle(stub)  # a warm-up read racing its own write's invalidation would not be kept
    warm = [a.cookie for i, a in enumerate(batch.accounts) if plan.warm[i]]
    if warm:  # one by one: a single call fills the cache as a batch does
        for request in warm:
            stub.ValidateSession(request, timeout=10)
    for index, account in enumerate(batch.accounts):
        if plan.destroyed[index]:
            store.destroy(account)
    store.settle(stub)
    if on_batch is not None:
        on_batch(batch)
    problems: list[str] = []
    # Alone first (what the cache holds is exactly what was warmed), then beside single calls and rewrites.
    answer = stub.ValidateSessions(pb.ValidateSessionsRequest(requests=batch.requests), timeout=10)
    problems += wrong_items(batch.expected(churning=False), answer.responses)
    if not rounds:
        return problems
    with Background(stub, store, batch, plan) as background:
        for _ in range(rounds):
            answer = stub.ValidateSessions(pb.ValidateSessionsRequest(requests=batch.requests), timeout=10)
            problems += wrong_items(batch.expected(churning=True), answer.responses)
    problems += background.problems
    return problems
