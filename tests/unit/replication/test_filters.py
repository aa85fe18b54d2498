"""The artifact filters' matching: which types a name or glob stands for, labels as key=value globs,
the labels read from an image config, and the patterns a policy refuses."""

from __future__ import annotations

import json

import pytest

from dockyard.replication.filters import (
    FilterInvalid,
    artifact_type,
    check_artifact_types,
    check_labels,
    config_labels,
    labels_selected,
    type_selected,
)
from dockyard.replication.interfaces import Direction, Policy, PolicyInvalid, check_policy

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
HELM = "application/vnd.cncf.helm.config.v1+json"
COSIGN = "application/vnd.dev.cosign.artifact.sig.v1+json"
SPDX = "application/spdx+json"
INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.mark.parametrize(
    ("patterns", "kind", "selected"),
    [
        ((), HELM, True),  # no filter: everything
        (("image",), OCI_CONFIG, True),
        (("image",), DOCKER_CONFIG, True),
        (("image",), INDEX, True),
        (("image",), HELM, False),
        (("image",), COSIGN, False),
        (("signature",), COSIGN, True),
        (("signature",), "application/vnd.cncf.notary.signature", True),
        (("signature",), OCI_CONFIG, False),
        (("sbom",), SPDX, True),
        (("sbom",), "application/vnd.cyclonedx+json", True),
        (("sbom",), COSIGN, False),
        (("attestation",), "application/vnd.in-toto+json", True),
        (("chart",), HELM, True),
        (("chart",), OCI_CONFIG, False),
        (("image", "chart"), HELM, True),  # any of them
        (("application/vnd.cncf.helm.*",), HELM, True),
        (("application/vnd.example.*",), HELM, False),
        (("*/spdx*",), SPDX, True),
        (("text/*",), SPDX, False),
    ],
)
def test_type_filter(patterns: tuple[str, ...], kind: str, selected: bool) -> None:
    assert type_selected(patterns, kind) is selected


def test_the_type_is_artifact_type_then_config_then_the_manifest_s_own() -> None:
    assert artifact_type("m", COSIGN, OCI_CONFIG) == COSIGN
    assert artifact_type("m", None, HELM) == HELM
    assert artifact_type(INDEX, None, None) == INDEX


@pytest.mark.parametrize(
    ("patterns", "selected"),
    [
        ((), True),
        (("tier=prod",), True),
        (("tier=prod*",), True),
        (("tier=dev",), False),
        (("tier",), True),  # present, any value
        (("owner",), False),
        (("tier=prod", "team=pay*"), True),  # all must hold
        (("tier=prod", "team=web"), False),
        (("org.opencontainers.image.source=https://*/pay",), True),  # * spans /
        (("Tier=prod",), False),  # keys and values are case-sensitive
    ],
)
def test_label_filter(patterns: tuple[str, ...], selected: bool) -> None:
    labels = {"tier": "production", "team": "payments", "org.opencontainers.image.source": "https://git/x/pay"}
    labels["tier"] = "prod"
    assert labels_selected(patterns, labels) is selected


def test_labels_come_from_the_image_config() -> None:
    config = {"architecture": "amd64", "config": {"Labels": {"tier": "prod", "n": 1}, "Env": []}}
    assert config_labels(json.dumps(config).encode()) == {"tier": "prod"}  # non-strings are no labels
    assert config_labels(b'{"architecture": "amd64", "config": {}}') == {}
    assert config_labels(b'{"config": {"Labels": null}}') == {}
    assert config_labels(b"not json") == {}
    assert config_labels(b"[]") == {}


@pytest.mark.parametrize("bad", ["", "imag", "x" * 300, "tab\there"])
def test_bad_type_patterns_are_refused(bad: str) -> None:
    with pytest.raises(FilterInvalid):
        check_artifact_types([bad])


@pytest.mark.parametrize("bad", ["", "=prod", " =x"])
def test_bad_label_patterns_are_refused(bad: str) -> None:
    with pytest.raises(FilterInvalid):
        check_labels([bad])


def test_a_policy_with_bad_filters_is_invalid_and_says_why() -> None:
    base = {"name": "p", "direction": Direction.PUSH, "endpoint": "e"}
    check_policy(Policy(**base, artifact_types=("image", "application/x.*"), labels=("a=b", "c")))
    with pytest.raises(PolicyInvalid, match="artifact type 'helm'"):
        check_policy(Policy(**base, artifact_types=("helm",)))
    with pytest.raises(PolicyInvalid, match="at most 16"):
        check_policy(Policy(**base, labels=tuple(f"k{n}" for n in range(17))))
