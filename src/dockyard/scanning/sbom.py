"""An image's inventory as an SBOM: CycloneDX 1.6 JSON (cyclonedx-python-lib, loaded only here, in the
process that writes an SBOM) and SPDX 2.3 JSON."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from dockyard.scanning.models import ImageInventory

CYCLONEDX = "cyclonedx"
SPDX = "spdx"
ARTIFACT_TYPES = {CYCLONEDX: "application/vnd.cyclonedx+json", SPDX: "application/spdx+json"}
TOOL = "dockyard"
NOASSERTION = "NOASSERTION"


def render(kind: str, repository: str, image: ImageInventory) -> bytes:
    if kind == CYCLONEDX:
        return cyclonedx_json(repository, image)
    if kind == SPDX:
        return spdx_json(repository, image)
    raise ValueError(f"unknown SBOM format {kind!r}: {', '.join(ARTIFACT_TYPES)}")


def cyclonedx_json(repository: str, image: ImageInventory) -> bytes:
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    bom = Bom()
    root = Component(
        name=repository,
        version=image.manifest,
        type=ComponentType.CONTAINER,
        bom_ref=image.manifest,
        properties=[Property(name="dockyard:platform", value=image.platform)],
    )
    bom.metadata.component = root
    if image.distro:
        bom.metadata.properties.add(Property(name="dockyard:distro", value=image.distro))
    components = []
    for index, package in enumerate(image.packages):
        component = Component(
            name=package.name,
            version=package.version,
            type=ComponentType.LIBRARY,
            purl=PackageURL.from_string(package.purl),
            bom_ref=f"{package.purl}#{index}",
            properties=[
                Property(name="dockyard:ecosystem", value=package.ecosystem),
                Property(name="dockyard:layer", value=package.layer),
                Property(name="dockyard:path", value=package.path),
            ],
        )
        bom.components.add(component)
        components.append(component)
    bom.register_dependency(root, components)
    return JsonV1Dot6(bom).output_as_string(indent=2).encode()


def spdx_json(repository: str, image: ImageInventory) -> bytes:
    """SPDX 2.3 JSON, written directly: spdx-tools (with beartype and rdflib) would add ~10 MB to the
    image for a flat document; the tests check what this writes with spdx-tools' own validator."""
    root_id = "SPDXRef-Image"
    comment = f"platform {image.platform}" + (f", distro {image.distro}" if image.distro else "")
    packages: list[dict[str, Any]] = [
        {
            "SPDXID": root_id,
            "name": repository,
            "versionInfo": image.manifest,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": False,
            "primaryPackagePurpose": "CONTAINER",
            "comment": comment,
        }
    ]
    relationships = [_relationship("SPDXRef-DOCUMENT", "DESCRIBES", root_id)]
    for index, package in enumerate(image.packages):
        spdx_id = f"SPDXRef-Package-{index}"
        packages.append(
            {
                "SPDXID": spdx_id,
                "name": package.name,
                "versionInfo": package.version,
                "downloadLocation": NOASSERTION,
                "filesAnalyzed": False,
                "sourceInfo": (
                    f"{package.ecosystem} package read from {package.path} in layer {package.layer}"
                ),
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": package.purl,
                    }
                ],
            }
        )
        relationships.append(_relationship(root_id, "CONTAINS", spdx_id))
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{repository}@{image.manifest}",
        "documentNamespace": (
            f"https://spdx.org/spdxdocs/dockyard/{repository}/{image.manifest}-{uuid.uuid4()}"
        ),
        "creationInfo": {
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": [f"Tool: {TOOL}"],
        },
        "packages": packages,
        "relationships": relationships,
    }
    return json.dumps(document, indent=2, ensure_ascii=False).encode()


def _relationship(element: str, kind: str, related: str) -> dict[str, str]:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}
