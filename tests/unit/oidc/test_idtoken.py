"""The ID token's checks against tokens a hostile or broken provider could send: each must be refused
(OIDCLoginFailed), whatever else about the token is right. The keys are made here: a real provider
never signs these tokens, so the JWKS is served by a function."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dockyard.oidc.idtoken import verify_id_token
from dockyard.oidc.interfaces import OIDCLoginFailed

ISSUER = "https://idp.example.com/realms/main"
CLIENT = "dockyard"
NONCE = "n-0S6_WzA2Mj"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk_of(key: Any, kid: str, **extra: str) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    )
    document = json.loads(algorithm.to_jwk(key.public_key()))
    return {**document, "kid": kid, "use": "sig", **extra}


class Keys:
    """A provider's JWKS as `verify_id_token` reads it: what it says now, and how often it was asked."""

    def __init__(self, *jwks: dict[str, Any]) -> None:
        self.jwks = list(jwks)
        self.fetches: list[bool] = []

    def __call__(self, refresh: bool) -> dict[str, Any]:
        self.fetches.append(refresh)
        return {"keys": self.jwks}


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": CLIENT, "sub": "248289761001", "iat": now, "exp": now + 300, "nonce": NONCE}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def signed(payload: dict[str, Any], key: Any = RSA_KEY, algorithm: str = "RS256", kid: str = "k1") -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def verify(token: str, keys: Keys | None = None) -> dict[str, Any]:
    return verify_id_token(
        token, keys or Keys(jwk_of(RSA_KEY, "k1")), issuer=ISSUER, client_id=CLIENT, nonce=NONCE
    )


def refused(token: str, why: str, keys: Keys | None = None) -> None:
    with pytest.raises(OIDCLoginFailed) as caught:
        verify(token, keys)
    assert why in caught.value.message


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_good_token_gives_its_claims() -> None:
    assert verify(signed(claims()))["sub"] == "248289761001"
    es_keys = Keys(jwk_of(EC_KEY, "e1"))
    assert verify(signed(claims(), EC_KEY, "ES256", "e1"), es_keys)["sub"] == "248289761001"
    several = claims(aud=[CLIENT, "other"], azp=CLIENT)
    assert verify(signed(several))["aud"] == [CLIENT, "other"]


def test_alg_none_is_refused() -> None:
    unsigned = f"{b64({'alg': 'none', 'kid': 'k1', 'typ': 'JWT'})}.{b64(claims())}."
    refused(unsigned, "algorithm 'none' is not accepted")


def test_hs256_signed_with_the_providers_public_key_is_refused() -> None:
    # The classic confusion: the attacker signs with HMAC, using the public key (which anyone can
    # fetch from the JWKS) as the secret, hoping the verifier uses that key with the header's alg.
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64({"alg": "HS256", "kid": "k1", "typ": "JWT"})
    body = b64(claims())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    refused(f"{header}.{body}.{b64(signature)}", "algorithm 'HS256' is not accepted")


def test_a_symmetric_key_in_the_jwks_is_never_used() -> None:
    secret = b"a-shared-secret-of-at-least-32-bytes!!"
    keys = Keys({"kty": "oct", "kid": "k1", "k": b64(secret)})
    header = b64({"alg": "RS256", "kid": "k1"})
    refused(f"{header}.{b64(claims())}.{b64(b'x' * 256)}", "a key the provider does not publish", keys)


def test_another_issuer_another_audience_expired_or_another_nonce_are_refused() -> None:
    refused(signed(claims(iss="https://evil.example.com/realms/main")), "another issuer")
    refused(signed(claims(iss=ISSUER + "/")), "another issuer")
    refused(signed(claims(aud="someone-else")), "another client")
    refused(signed(claims(aud=["someone-else", CLIENT])), "another client")  # azp missing
    refused(signed(claims(aud=[CLIENT, "other"], azp="other")), "another client")
    past = int(time.time()) - 3600
    refused(signed(claims(iat=past - 300, exp=past)), "expired")
    refused(signed(claims(nonce="a-replayed-token's-nonce")), "nonce")
    refused(signed(claims(nonce=None)), "nonce")
    refused(signed(claims(exp=None)), "not valid")


def test_a_token_signed_by_another_key_is_refused() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(signed(claims(), other), "signature does not verify")
    refused(signed(claims(), EC_KEY, "ES256"), "a key the provider does not publish")  # an RSA key has kid k1


def test_an_unknown_kid_fetches_the_jwks_again_once() -> None:
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    class Rotating(Keys):
        def __call__(self, refresh: bool) -> dict[str, Any]:
            self.fetches.append(refresh)
            return {"keys": [jwk_of(RSA_KEY, "k1"), *([jwk_of(rotated, "k2")] if refresh else [])]}

    keys = Rotating()
    assert verify(signed(claims(), rotated, kid="k2"), keys)["sub"]
    assert keys.fetches == [False, True]
    stranger = Keys(jwk_of(RSA_KEY, "k1"))
    refused(signed(claims(), rotated, kid="k9"), "does not publish", stranger)
    assert stranger.fetches == [False, True]


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "x" * 70_000])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(OIDCLoginFailed):
        verify(token)
