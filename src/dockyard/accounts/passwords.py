"""Password hashing (argon2id) and the password policy: at least 8 characters, not the username, and
not easy to guess (zxcvbn: common passwords, words, names, keyboard patterns, dates, l33t; score >= 3).

Cost: argon2id with 7 MiB, 5 passes, 1 lane: one of the parameter sets OWASP's password storage cheat
sheet lists as equally strong as its 19 MiB / 2 passes (they trade memory for passes), about 25 ms per
verify on a 2-core machine, the same CPU as 19 MiB / 2 passes. The smaller block is for the server's
memory: every hash allocates it for its duration, on top of what the worker holds (19 MiB took a
worker past its 120 MiB budget under load: docs/benchmarks.md, "Memory"). argon2-cffi's defaults
(64 MiB, 3 passes, 4 lanes) took about 180 ms there, which would let a few dozen concurrent logins
saturate a node. Hashes carry their parameters, so a change of them rehashes each user at their next
login (hashes made with 19 MiB / 2 passes too).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import TYPE_CHECKING

from dockyard.accounts.interfaces import WeakPassword

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # longer inputs only cost CPU
# zxcvbn's score, 0-4: 3 is "safely unguessable" (about 10^8 guesses or more). It refuses `password`,
# `Summer2024!`, `p@ssw0rd123` and the like; a passphrase of a few uncommon words passes.
MIN_STRENGTH = 3
# zxcvbn judges the first this many characters (its own default limit): its time grows fast with the
# length (1024 repeated letters took a minute), and a strong start makes a strong password anyway.
STRENGTH_CHECKED_LENGTH = 72

MEMORY_KIB, PASSES = 7 * 1024, 5
# For dockyard's own test suite only (tests/conftest.py sets it to 1): argon2id at its cheapest (8 KiB,
# 1 pass, ~0.05 ms) instead of ~25 ms per hash and per verify, which took a quarter of the CPU of the
# suite's account-heavy modules. Verifying is unchanged (a hash carries its parameters). Never set it on
# a registry: hashes made under it fall to a guessing attack at once; every process that hashes says so
# in its log.
INSECURE_TEST_HASHES_ENV = "DOCKYARD_INSECURE_TEST_PASSWORD_HASHES"
# argon2-cffi loads where passwords are checked (`dockyard serve` preloads it before the fork where
# its auth mode has accounts: app.auth.AUTH_MODULES), not in a registry without them (as the test
# suite's servers run).
PASSWORD_MODULES = ("argon2",)


_hasher: PasswordHasher | None = None  # made on first use (password_hasher)


def password_hasher() -> PasswordHasher:
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        if os.environ.get(INSECURE_TEST_HASHES_ENV) == "1":
            logging.getLogger("dockyard.accounts").warning(
                "%s=1: passwords are hashed with argon2id's cheapest parameters, for tests only; "
                "never on a registry",
                INSECURE_TEST_HASHES_ENV,
            )
            _hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        else:
            _hasher = PasswordHasher(time_cost=PASSES, memory_cost=MEMORY_KIB, parallelism=1)
    return _hasher


# Each hash takes 7 MiB and a core for ~25 ms: a burst of logins with different credentials queues
# for cores rather than running all at once (64 at once pushed a worker past 500 MiB and made every
# login slow; the same credentials in flight together share one check: dockyard.auth.singleflight).
# More at once than cores only adds memory, not speed. Not a setting: the cores are the limit. This
# is the default per process; the HTTP workers of a node share its cores (`hash_share`).
CONCURRENT_HASHES = max(1, os.cpu_count() or 1)
_HASH_SLOTS = threading.BoundedSemaphore(CONCURRENT_HASHES)
_hash_limit = CONCURRENT_HASHES


def hash_share(processes: int, cpus: int | None = None) -> int:
    """How many hashes each of a node's `processes` may run at once: its share of the cores, at least
    one. Two workers on two cores: one each, so a worker never holds two hashes' blocks at once."""
    return max(1, (cpus or os.cpu_count() or 1) // max(1, processes))


def limit_concurrent_hashes(limit: int) -> None:
    """At most `limit` hashes at once in this process from now on (set at start, before any login)."""
    global _HASH_SLOTS, _hash_limit
    _hash_limit = max(1, limit)
    _HASH_SLOTS = threading.BoundedSemaphore(_hash_limit)


def concurrent_hashes() -> int:
    return _hash_limit


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so an unknown name takes as long as a wrong
    password. Made on first use, not at import (a hash costs ~25 ms and 7 MiB)."""
    return password_hasher().hash("dockyard-dummy-password")


def check_password_policy(password: str, username: str | None = None) -> None:
    """WeakPassword when the password is too short, too long, or the username itself."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    if username is not None and password.casefold() == username.casefold():
        raise WeakPassword("the password must not be the username")
    _check_strength(password, username)


def _check_strength(password: str, username: str | None) -> None:
    # Imported here, not at the top: its word lists take ~15 MB and 50 ms, needed only where
    # passwords are set (user creation, password changes, the first start), never for logins.
    from zxcvbn import zxcvbn

    judged = zxcvbn(password[:STRENGTH_CHECKED_LENGTH], user_inputs=[username] if username else [])
    if judged["score"] >= MIN_STRENGTH:
        return
    feedback = judged.get("feedback") or {}
    advice = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
    said = " ".join(part.strip() for part in advice if part and part.strip())
    raise WeakPassword("the password is too easy to guess" + (f": {said}" if said else ""))


def hash_password(password: str) -> str:
    with _HASH_SLOTS:
        return password_hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; a missing hash still costs one verify (no timing oracle)."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    hasher = password_hasher()
    try:
        with _HASH_SLOTS:
            return hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return password_hasher().check_needs_rehash(password_hash)
