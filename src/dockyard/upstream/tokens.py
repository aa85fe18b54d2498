"""The client side of Docker's token auth (distribution's docs/spec/auth/token.md): parse the registry's
`WWW-Authenticate` challenge, ask the realm for a token for a service and scopes (with Basic credentials
when the endpoint has some), and reuse each token until shortly before it expires.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# RFC 7235: auth-scheme, then auth-params `name=token` or `name="quoted \" string"`, comma separated.
# One header may hold several challenges (`Basic realm="x", Bearer realm="y"`).
_SCHEME = re.compile(r"\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)(?:\s+|$)")
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')
_UNESCAPE = re.compile(r"\\(.)")

# The spec: "When omitted, this defaults to 60 seconds."
DEFAULT_TOKEN_SECONDS = 60
# A token is renewed this long before it expires, so a request never leaves with one about to lapse.
EXPIRY_MARGIN = 10.0


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in one `WWW-Authenticate` value; param names lower-cased, values unquoted. A
    malformed remainder ends the parse (what came before it is kept)."""
    challenges: list[Challenge] = []
    position = 0
    while position < len(header):
        if header[position] in ", \t":
            position += 1
            continue
        scheme = _SCHEME.match(header, position)
        if scheme is None:
            break
        position = scheme.end()
        params: dict[str, str] = {}
        while position < len(header):
            param = _PARAM.match(header, position)
            if param is None:
                break
            name, quoted, bare = param.group(1).lower(), param.group(2), param.group(3)
            params[name] = _UNESCAPE.sub(r"\1", quoted) if quoted is not None else bare
            position = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def find_challenge(headers: list[str], scheme: str) -> Challenge | None:
    for header in headers:
        for challenge in parse_challenges(header):
            if challenge.scheme == scheme:
                return challenge
    return None


def token_lifetime(answer: dict[str, object]) -> float:
    """Seconds the token endpoint's answer says its token lives (60 when it does not say)."""
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        return float(expires_in)
    return float(DEFAULT_TOKEN_SECONDS)


def token_of(answer: dict[str, object]) -> str | None:
    """`token`, or OAuth's `access_token` (the spec allows either)."""
    for key in ("token", "access_token"):
        value = answer.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class TokenCache:
    """Bearer tokens by (realm, service, scope), each reused until EXPIRY_MARGIN before it expires.
    Thread-safe: the cache and replication share one client across threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None:
                return None
            token, renew_at = entry
            if self.clock() >= renew_at:
                del self._tokens[key]
                return None
            return token

    def put(self, key: tuple[str, str, str], token: str, lifetime: float) -> None:
        # A short-lived token is used for at least half its life, not thrown away at once.
        margin = min(EXPIRY_MARGIN, lifetime / 2)
        with self._lock:
            self._tokens[key] = (token, self.clock() + lifetime - margin)

    def drop(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def __len__(self) -> int:
        return len(self._tokens)
