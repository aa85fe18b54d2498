"""PrincipalStanding: a bearer token's principal is checked against the database once per principal,
credential and scopes, then remembered until the change feed moves, its TTL ends or the credential
expires; the /v2 gate asks it on every request and makes no query on a remembered answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dockyard.accounts.interfaces import CredentialState
from dockyard.api.oci.gate import Challenge, TokenGate
from dockyard.auth.interfaces import ANONYMOUS, Credential, CredentialKind, Principal, PrincipalKind, Scope
from dockyard.auth.scopes import AccessSet, repository_scope
from dockyard.auth.standing import PrincipalStanding, Verdict
from dockyard.auth.tokens import VerifiedToken

PULL = [repository_scope("team/app", "pull")]
PASSWORD = Credential(CredentialKind.PASSWORD, "P" * 22)
ALICE = Principal(PrincipalKind.USER, "alice", 7, credential=PASSWORD)


class Backend:
    """A policy and a credential store that count what they are asked."""

    def __init__(self) -> None:
        self.allowed: set[str] = {"team/app"}
        self.state = CredentialState(True)
        self.grants = 0
        self.credential_checks = 0

    def grant(self, principal: Principal, requested: Sequence[Scope]) -> list[Scope]:
        self.grants += 1
        return [scope for scope in requested if scope.name in self.allowed]

    def credential_state(self, principal: Principal) -> CredentialState:
        self.credential_checks += 1
        return self.state


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def standing(backend: Backend, clock: Clock, generation: list[int] | None = None) -> PrincipalStanding:
    source = (lambda: generation[0]) if generation is not None else None
    return PrincipalStanding(backend, backend, ttl=30, clock=clock, generation=source)


def test_an_answer_is_remembered_per_principal_credential_and_scopes() -> None:
    backend, clock = Backend(), Clock()
    checker = standing(backend, clock)
    assert checker.remembered(ALICE, PULL) is None
    assert checker.check(ALICE, PULL) is Verdict.ALLOWED
    assert (backend.grants, backend.credential_checks) == (1, 1)
    assert checker.remembered(ALICE, PULL) is Verdict.ALLOWED
    other_credential = Principal(
        PrincipalKind.USER, "alice", 7, credential=Credential(CredentialKind.DIRECTORY)
    )
    assert checker.remembered(other_credential, PULL) is None
    assert checker.remembered(ALICE, [repository_scope("team/app", "pull", "push")]) is None


def test_one_answer_serves_every_repository_of_a_project() -> None:
    """Roles and permissions are per project (AccessPolicy.grant): so is the remembered answer."""
    backend, clock = Backend(), Clock()
    checker = standing(backend, clock)
    assert checker.check(ALICE, PULL) is Verdict.ALLOWED
    assert checker.remembered(ALICE, [repository_scope("team/web", "pull")]) is Verdict.ALLOWED
    assert checker.remembered(ALICE, [repository_scope("team", "pull")]) is Verdict.ALLOWED
    assert checker.remembered(ALICE, [repository_scope("other/app", "pull")]) is None
    assert checker.remembered(ALICE, [repository_scope("team/web", "push")]) is None
    assert checker.remembered(ALICE, [repository_scope("team/NOT_VALID", "pull")]) is None
    assert backend.grants == 1


def test_the_change_feed_and_the_ttl_make_it_ask_again() -> None:
    backend, clock, generation = Backend(), Clock(), [0]
    checker = standing(backend, clock, generation)
    checker.check(ALICE, PULL)
    generation[0] += 1
    assert checker.remembered(ALICE, PULL) is None
    checker.check(ALICE, PULL)
    clock.now += 30
    assert checker.remembered(ALICE, PULL) is None


def test_never_remembered_past_the_credential_s_own_expiry() -> None:
    backend, clock = Backend(), Clock()
    backend.state = CredentialState(True, datetime.fromtimestamp(clock.now + 5, UTC))
    checker = standing(backend, clock)
    assert checker.check(ALICE, PULL) is Verdict.ALLOWED
    clock.now += 5
    assert checker.remembered(ALICE, PULL) is None


def test_a_dead_credential_is_revoked_and_a_lost_permission_not_permitted() -> None:
    backend, clock = Backend(), Clock()
    backend.allowed = set()
    assert standing(backend, clock).check(ALICE, PULL) is Verdict.NOT_PERMITTED
    backend.state = CredentialState(False)
    assert standing(backend, clock).check(ALICE, PULL) is Verdict.REVOKED
    assert standing(backend, clock).check(ALICE, []) is Verdict.REVOKED  # /v2/ itself too


def test_anonymous_has_no_credential_to_check_only_permissions() -> None:
    backend, clock = Backend(), Clock()
    assert standing(backend, clock).check(ANONYMOUS, PULL) is Verdict.ALLOWED
    assert backend.credential_checks == 0
    backend.allowed = set()
    assert standing(backend, clock).check(ANONYMOUS, PULL) is Verdict.NOT_PERMITTED


class FixedVerifier:
    def __init__(self, principal: Principal) -> None:
        self.verified = VerifiedToken(principal, AccessSet.of(PULL), expires_at=2_000_000_000.0)

    def verify(self, token: str) -> VerifiedToken:
        return self.verified


def request(token: str = "t") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "query_string": b"",
        "scheme": "http",
        "headers": [(b"host", b"r.test"), (b"authorization", f"Bearer {token}".encode())],
    }


def test_the_gate_asks_once_then_answers_from_memory_and_follows_the_feed() -> None:
    backend, generation = Backend(), [0]
    checker = PrincipalStanding(backend, backend, generation=lambda: generation[0])
    gate = TokenGate(
        FixedVerifier(ALICE), Challenge("dockyard"), standing=checker, generation=lambda: generation[0]
    )

    async def statuses(count: int) -> list[int | None]:
        answers = [await gate.check(request(), "tags", ("team/app",), "GET") for _ in range(count)]
        return [getattr(answer, "status_code", None) for answer in answers]

    assert asyncio.run(statuses(100)) == [None] * 100  # the principal each time
    assert (backend.grants, backend.credential_checks) == (1, 1)  # no query on a remembered answer
    backend.allowed = set()
    generation[0] += 1  # a membership was removed somewhere
    assert asyncio.run(statuses(3)) == [401] * 3
    backend.state = CredentialState(False)
    generation[0] += 1  # the user was disabled
    answer = asyncio.run(gate.check(request(), "tags", ("team/app",), "GET"))
    assert getattr(answer, "status_code", None) == 401
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]  # type: ignore[union-attr]
