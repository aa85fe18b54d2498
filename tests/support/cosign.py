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
