"""Which manifests pull policies leave alone: signatures, attestations and SBOMs (no filesystem
layer), never an index or a manifest with a filesystem layer, whatever else it claims."""

from __future__ import annotations

import json
from typing import Any

from dockyard.signatures.pull_gate import is_supporting_artifact

OCI = "application/vnd.oci.image.manifest.v1+json"
SIG = "application/vnd.dev.cosign.simplesigning.v1+json"
TAR = "application/vnd.oci.image.layer.v1.tar+gzip"


def manifest(*layer_types: str, **extra: Any) -> bytes:
    layers = [{"mediaType": t, "digest": "sha256:" + "0" * 64, "size": 1} for t in layer_types]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI, "layers": layers, **extra}).encode()


def test_signature_attestation_and_sbom_manifests_are_supporting() -> None:
    others = [
        "application/jose+json",
        "application/vnd.cyclonedx+json",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dsse.envelope.v1+json",
    ]
    for layers in [(SIG,), (SIG, SIG), *((other,) for other in others)]:
        assert is_supporting_artifact(manifest(*layers), OCI), layers


def test_anything_with_a_filesystem_layer_or_no_layer_or_an_index_is_judged() -> None:
    assert not is_supporting_artifact(manifest(SIG, TAR), OCI)
    assert not is_supporting_artifact(manifest(TAR, subject={"digest": "sha256:" + "1" * 64}), OCI)
    assert not is_supporting_artifact(manifest(), OCI)
    assert not is_supporting_artifact(manifest(SIG), "application/vnd.oci.image.index.v1+json")
    assert not is_supporting_artifact(b"not json", OCI)
    assert not is_supporting_artifact(b"[]", OCI)
    assert not is_supporting_artifact(json.dumps({"layers": [SIG]}).encode(), OCI)
