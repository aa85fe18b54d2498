"""An image's inventory as an SBOM: CycloneDX 1.6 JSON (cyclonedx-python-lib) and SPDX 2.3 JSON
(spdx-tools). Both libraries load only here, in the process that writes an SBOM."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

from dockyard.scanning.models import ImageInventory

CYCLONEDX = "cyclonedx"
SPDX = "spdx"
ARTIFACT_TYPES = {CYCLONEDX: "application/vnd.cyclonedx+json", SPDX: "application/spdx+json"}
TOOL = "dockyard"


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
    from spdx_tools.spdx.model import (
        Actor,
        ActorType,
        CreationInfo,
        Document,
        ExternalPackageRef,
        ExternalPackageRefCategory,
        Package,
        PackagePurpose,
        Relationship,
        RelationshipType,
        SpdxNoAssertion,
    )
    from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

    name = f"{repository}@{image.manifest}"
    info = CreationInfo(
        spdx_version="SPDX-2.3",
        spdx_id="SPDXRef-DOCUMENT",
        name=name,
        document_namespace=f"https://spdx.org/spdxdocs/dockyard/{repository}/{image.manifest}-{uuid.uuid4()}",
        creators=[Actor(ActorType.TOOL, TOOL)],
        created=datetime.now(UTC).replace(microsecond=0, tzinfo=None),
    )
    root = Package(
        spdx_id="SPDXRef-Image",
        name=repository,
        download_location=SpdxNoAssertion(),
        version=image.manifest,
        files_analyzed=False,
        primary_package_purpose=PackagePurpose.CONTAINER,
        comment=f"platform {image.platform}" + (f", distro {image.distro}" if image.distro else ""),
    )
    packages = [root]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, root.spdx_id)]
    for index, package in enumerate(image.packages):
        spdx_id = f"SPDXRef-Package-{index}"
        packages.append(
            Package(
                spdx_id=spdx_id,
                name=package.name,
                download_location=SpdxNoAssertion(),
                version=package.version,
                files_analyzed=False,
                source_info=f"{package.ecosystem} package read from {package.path} in layer {package.layer}",
                external_references=[
                    ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", package.purl)
                ],
            )
        )
        relationships.append(Relationship(root.spdx_id, RelationshipType.CONTAINS, spdx_id))
    document = Document(info, packages=packages, relationships=relationships)
    out = io.StringIO()
    write_document_to_stream(document, out, validate=True)
    return out.getvalue().encode()
