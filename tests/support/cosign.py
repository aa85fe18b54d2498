"""cosign signatures made the way cosign's EXAMPLES.md makes them by hand: keys and signatures with the
`openssl` command, the simple-signing payload cosign writes (`cosign generate`), pushed as cosign
pushes them: the `sha256-<hex>.sig` tag form and the OCI 1.1 referrer form
(`--registry-referrers-mode=oci-1-1`). Formats: sigstore/cosign specs/SIGNATURE_SPEC.md."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_MANIFEST,
    OCIClient,
    PushedManifest,
    descriptor,
    digest_of,
    empty_descriptor,
    image_manifest,
)

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_REFERRER = "application/vnd.dev.cosign.artifact.sig.v1+json"


def openssl(*args: str | Path, data: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *map(str, args)], input=data, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@dataclass(frozen=True)
class KeyPair:
    kind: str  # ecdsa | rsa | ed25519
    private: Path
    public_pem: str

    def sign(self, payload: bytes, workdir: Path) -> bytes:
        """The raw signature over the payload, made with openssl (cosign's EXAMPLES.md:
        `openssl dgst -sha256 -sign key.pem payload.json`; Ed25519 signs the payload itself)."""
        path = workdir / f"payload-{self.kind}-{abs(hash(payload))}.json"
        path.write_bytes(payload)
        if self.kind == "ed25519":
            return openssl("pkeyutl", "-sign", "-rawin", "-inkey", self.private, "-in", path)
        return openssl("dgst", "-sha256", "-sign", self.private, path)


def make_key(kind: str, workdir: Path, name: str) -> KeyPair:
    private = workdir / f"{name}.key"
    if kind == "ecdsa":
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", private)
    elif kind == "rsa":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", private)
    else:
        openssl("genpkey", "-algorithm", kind, "-out", private)
    public = openssl("pkey", "-in", private, "-pubout").decode()
    return KeyPair(kind, private, public)


def payload(digest: str, reference: str = "registry.example/app") -> bytes:
    """What `cosign generate` prints (cosign's json.Marshal order, no spaces)."""
    document = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def signature_layer(oci: OCIClient, repo: str, body: bytes, signature: bytes | str) -> dict[str, Any]:
    """Push the payload blob; its layer descriptor with the base64 signature annotation."""
    oci.push_blob(repo, body)
    encoded = signature if isinstance(signature, str) else base64.b64encode(signature).decode()
    return descriptor(SIMPLE_SIGNING, body, annotations={SIGNATURE_ANNOTATION: encoded})


def push_sig_tag(oci: OCIClient, repo: str, subject: str, layers: list[dict[str, Any]]) -> PushedManifest:
    """The tag form: an image manifest tagged `sha256-<hex>.sig` (cosign's config is a small image
    config naming the layers' diff ids)."""
    config = json.dumps(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        }
    ).encode()
    oci.push_blob(repo, config)
    body = image_manifest(descriptor(OCI_CONFIG, config), layers)
    return oci.push_manifest(repo, subject.replace(":", "-") + ".sig", body, OCI_MANIFEST)


def push_referrer(
    oci: OCIClient, repo: str, subject: PushedManifest, layers: list[dict[str, Any]]
) -> PushedManifest:
    """The OCI 1.1 form: a manifest with cosign's artifactType and the image as its subject."""
    oci.push_blob(repo, b"{}")
    body = image_manifest(
        empty_descriptor(), layers, artifact_type=COSIGN_REFERRER, subject=subject.descriptor()
    )
    return oci.push_manifest(repo, digest_of(body), body, OCI_MANIFEST)


# --- notation (Notary Project) JWS envelopes --------------------------------------------------------
NOTATION_ARTIFACT = "application/vnd.cncf.notary.signature"
JWS_ENVELOPE = "application/jose+json"


@dataclass(frozen=True)
class Certificate:
    key: Path
    cert: Path

    @property
    def pem(self) -> str:
        return self.cert.read_text()

    def der_b64(self) -> str:
        der = openssl("x509", "-in", self.cert, "-outform", "DER")
        return base64.b64encode(der).decode()


def _newkey(kind: str) -> list[str]:
    return (
        ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    )


def make_ca(workdir: Path, name: str) -> Certificate:
    key, cert = workdir / f"{name}.key", workdir / f"{name}.crt"
    openssl(
        "req", "-x509", "-new", *_newkey("ecdsa"), "-nodes", "-keyout", key, "-out", cert,
        "-subj", f"/CN={name}", "-days", "30",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
    )  # fmt: skip
    return Certificate(key, cert)


def make_leaf(
    workdir: Path,
    name: str,
    ca: Certificate,
    kind: str = "ecdsa",
    usage: str = "codeSigning",
    subject: str | None = None,
    extra: str = "",
) -> Certificate:
    """A certificate `ca` issues; `subject` as openssl takes it (default /CN=name), `extra` more
    extension lines (e.g. a crlDistributionPoints)."""
    key, csr, cert = workdir / f"{name}.key", workdir / f"{name}.csr", workdir / f"{name}.crt"
    subject = subject or f"/CN={name}"
    openssl("req", "-new", *_newkey(kind), "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
    extensions = workdir / f"{name}.ext"
    extensions.write_text(
        f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n{extra}"
    )
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial", "2",
        "-out", cert, "-days", "10", "-extfile", extensions,
    )  # fmt: skip
    return Certificate(key, cert)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_envelope(
    leaf: Certificate,
    chain: list[Certificate],
    target: dict[str, Any],
    workdir: Path,
    *,
    alg: str | None = None,
    headers: dict[str, Any] | None = None,
    tamper: bool = False,
) -> bytes:
    """A notation JWS envelope (flattened JWS JSON), signed with openssl: ES256 (openssl's DER
    signature turned into JWS's r||s) or PS256 (RSASSA-PSS, salt as long as the hash)."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    rsa = b"rsaEncryption" in openssl(
        "x509", "-in", leaf.cert, "-noout", "-text"
    )
    protected = {
        "alg": alg or ("PS256" if rsa else "ES256"),
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": "2026-01-01T00:00:00Z",
        "crit": ["io.cncf.notary.signingScheme"],
        **(headers or {}),
    }
    payload = {"targetArtifact": target}
    protected_b64 = _b64url(json.dumps(protected).encode())
    payload_b64 = _b64url(json.dumps(payload).encode())
    signing_input = workdir / f"jws-{abs(hash((protected_b64, payload_b64)))}.txt"
    signing_input.write_text(f"{protected_b64}.{payload_b64}")
    if rsa:
        signature = openssl(
            "dgst", "-sha256", "-sign", leaf.key, "-sigopt", "rsa_padding_mode:pss",
            "-sigopt", "rsa_pss_saltlen:digest", signing_input,
        )  # fmt: skip
    else:
        r, s = decode_dss_signature(openssl("dgst", "-sha256", "-sign", leaf.key, signing_input))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if tamper:  # the payload changed after signing
        payload["targetArtifact"] = {**target, "annotations": {"evil": "yes"}}
        payload_b64 = _b64url(json.dumps(payload).encode())
    envelope = {
        "payload": payload_b64,
        "protected": protected_b64,
        "header": {"x5c": [c.der_b64() for c in chain], "io.cncf.notary.signingAgent": "dockyard-tests"},
        "signature": _b64url(signature),
    }
    return json.dumps(envelope).encode()


def push_notation(oci: OCIClient, repo: str, subject: PushedManifest, envelope: bytes) -> PushedManifest:
    """As notation pushes a signature: an OCI manifest with the notary artifactType, the empty config,
    the envelope as its layer and the artifact as its subject."""
    oci.push_blob(repo, b"{}")
    oci.push_blob(repo, envelope)
    body = image_manifest(
        empty_descriptor(),
        [descriptor(JWS_ENVELOPE, envelope)],
        artifact_type=NOTATION_ARTIFACT,
        subject=subject.descriptor(),
    )
    return oci.push_manifest(repo, digest_of(body), body, OCI_MANIFEST)
