"""What an artifact holds beyond its manifest: the image config it names (with the image's history,
`created_by` of each step) and the referrers whose subject it is (signatures, SBOMs, scan reports).
Whoever may read the repository may read both, as the manifest itself."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from dockyard.api.management.access import require
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import Caller
from dockyard.errors import NameUnknown
from dockyard.projects.rbac import Permission, project_of

router = APIRouter(tags=["repositories"])
Services = Annotated[ManagementServices, Depends(services_of)]
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # as a manifest: image configs are a few KiB


class ReferrerOut(BaseModel):
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    annotations: dict[str, str] | None


def _readable(services: ManagementServices, principal: Any, name: str) -> None:
    require(
        services, principal, project_of(name), Permission.PROJECT_READ, NameUnknown(detail={"name": name})
    )


@router.get("/repositories/{name:path}/artifacts/{reference}/config")
def artifact_config(name: str, reference: str, principal: Caller, services: Services) -> dict[str, Any]:
    """The JSON config document the artifact's manifest names, as stored. 404 for an index, or a config
    that is not a JSON document of at most 4 MiB."""
    _readable(services, principal, name)
    manifest = services.queries.get_artifact(name, reference).manifest
    config = manifest.get("config")
    missing = ApiError(404, "this artifact has no JSON config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str) or services.blobs is None:
        raise missing
    size = config.get("size")
    if not isinstance(size, int) or size > MAX_CONFIG_BYTES or size < 2:
        raise missing
    with services.blobs.open(config["digest"]) as stream:
        data = stream.read(MAX_CONFIG_BYTES + 1)
    try:
        document = json.loads(data)
    except ValueError:
        raise missing from None
    if not isinstance(document, dict):
        raise missing
    return document


@router.get("/repositories/{name:path}/artifacts/{reference}/referrers", response_model=list[ReferrerOut])
def artifact_referrers(name: str, reference: str, principal: Caller, services: Services) -> list[ReferrerOut]:
    """The artifacts in this repository whose `subject` is this one, oldest first (the OCI referrers
    API's list, as the management API spells resources)."""
    _readable(services, principal, name)
    digest = services.queries.get_artifact(name, reference).summary.digest
    listed = services.registry.referrers(name, digest, None)
    return [
        ReferrerOut(
            digest=d["digest"],
            media_type=d["mediaType"],
            artifact_type=d.get("artifactType"),
            size=d["size"],
            annotations=d.get("annotations"),
        )
        for d in listed.descriptors
    ]
