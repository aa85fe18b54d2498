"""The ID token's checks (OpenID Connect Core 3.1.3.7), with PyJWT.

- Only asymmetric signatures: `none` and the HMAC family are refused before any key is looked at, so
  a token signed with HS256 using the provider's public key as the HMAC secret is refused.
- The key comes from the provider's JWKS by `kid` (a kid not in the cached set fetches it again once:
  the provider rotated), must be a signing key, and must be of the header's algorithm.
- `iss` equals the configured issuer, `aud` contains the client id (and with more than one audience,
  `azp` is the client id), `exp` is in the future and `iat` present, `nonce` is the one this login sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import jwt
from jwt.exceptions import InvalidTokenError, PyJWTError

from dockyard.oidc.interfaces import OIDCLoginFailed

ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
LEEWAY = 60  # seconds of clock skew allowed on exp, iat, nbf
MAX_TOKEN_LENGTH = 64 * 1024

# keys(refresh): the provider's JWKS document; refresh=True asks the provider again.
KeySource = Callable[[bool], dict[str, Any]]


def verify_id_token(
    token: str, keys: KeySource, *, issuer: str, client_id: str, nonce: str
) -> dict[str, Any]:
    """The token's claims when every check passes; OIDCLoginFailed naming the first that did not."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise OIDCLoginFailed("the provider sent no usable ID token")
    try:
        header = jwt.get_unverified_header(token)
    except InvalidTokenError:
        raise OIDCLoginFailed("the ID token is malformed") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise OIDCLoginFailed(f"the ID token's algorithm {str(algorithm)[:20]!r} is not accepted")
    key = _key(keys, header.get("kid"), algorithm)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            audience=client_id,
            issuer=issuer,
            leeway=LEEWAY,
            options={"require": ["iss", "aud", "exp", "iat", "sub"], "strict_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise OIDCLoginFailed("the ID token has expired") from None
    except jwt.InvalidAudienceError:
        raise OIDCLoginFailed("the ID token is for another client") from None
    except jwt.InvalidIssuerError:
        raise OIDCLoginFailed("the ID token is from another issuer") from None
    except jwt.InvalidSignatureError:
        raise OIDCLoginFailed("the ID token's signature does not verify") from None
    except InvalidTokenError as error:
        raise OIDCLoginFailed(f"the ID token is not valid: {type(error).__name__}") from None
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise OIDCLoginFailed("the ID token is for another client")
    if "azp" in claims and claims["azp"] != client_id:
        raise OIDCLoginFailed("the ID token is for another client")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise OIDCLoginFailed("the ID token's nonce is not this login's")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise OIDCLoginFailed("the ID token names no subject")
    return claims


def _key(keys: KeySource, kid: object, algorithm: str) -> Any:
    """The verification key for `kid`: from the cached JWKS, else from a fresh one."""
    for refresh in (False, True):
        candidates = [
            jwk
            for jwk in _signing_keys(keys(refresh))
            if (kid is None or jwk.get("kid") == kid) and jwk.get("alg") in (None, algorithm)
        ]
        if kid is None and len(candidates) > 1:
            raise OIDCLoginFailed("the ID token names no key (kid) and the provider has several")
        for jwk in candidates:
            try:
                return jwt.PyJWK(jwk, algorithm=algorithm).key
            except (PyJWTError, ValueError, TypeError):
                continue  # not a key of this algorithm's type (an EC key for RS256, ...)
    raise OIDCLoginFailed("the ID token is signed with a key the provider does not publish")


def _signing_keys(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(found, list):
        return []
    return [
        jwk
        for jwk in found
        # Symmetric keys (kty oct) never verify an ID token here; encryption keys are not for signatures.
        if isinstance(jwk, dict)
        and jwk.get("kty") in ("RSA", "EC", "OKP")
        and jwk.get("use") in (None, "sig")
    ]
