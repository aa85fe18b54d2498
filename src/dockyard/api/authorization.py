"""The Authorization header, read one way by every endpoint that takes credentials: /v2's gate, /token,
/api/v1 and /metrics. Its size is bounded before anything is decoded or hashed, its scheme is
case-insensitive, and its credentials are the bytes the client sent (Starlette decodes headers as
Latin-1; encoding back gives them). Basic credentials decode with `auth.remembered.decode_basic`."""

from __future__ import annotations

from dataclasses import dataclass

# Bearer tokens with many scopes run to a few KiB; past this a header is refused before any work.
MAX_AUTHORIZATION_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Authorization:
    scheme: bytes  # lower-case: b"basic", b"bearer", ...
    credentials: bytes  # stripped; the base64 part of Basic, the token of Bearer

    @property
    def is_basic(self) -> bool:
        return self.scheme == b"basic" and bool(self.credentials)

    @property
    def is_bearer(self) -> bool:
        return self.scheme == b"bearer" and bool(self.credentials)


class AuthorizationTooLarge(ValueError):
    """The header is longer than MAX_AUTHORIZATION_BYTES."""


def parse_authorization(header: bytes | str | None) -> Authorization | None:
    """The header's scheme and credentials; None without one. AuthorizationTooLarge past the limit."""
    if header is None:
        return None
    raw = header.encode("latin-1", errors="replace") if isinstance(header, str) else header
    if len(raw) > MAX_AUTHORIZATION_BYTES:
        raise AuthorizationTooLarge(f"the Authorization header is over {MAX_AUTHORIZATION_BYTES} bytes")
    scheme, _, credentials = raw.partition(b" ")
    return Authorization(scheme.lower(), credentials.strip())
