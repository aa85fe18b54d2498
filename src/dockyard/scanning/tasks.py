"""The "sbom" job kind: make an image's SBOM and store it as a referrer, on a job worker.

`{"repository": "team/app", "reference": "1.4", "format": "cyclonedx"}` (also `platform` for an index,
`refresh: true` to replace a stored one): queued through `POST /api/v1/jobs` or `dockyard job run`. The
result names the image, the referrer that holds the SBOM and its size; the document itself is fetched
like any referrer (`dockyard sbom`, the referrers API, `oras discover` and `oras pull`).

The handler's modules (the layer walker, the SBOM libraries) load on its first run, not when the job
runner starts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dockyard.jobs.interfaces import JobContext, JobKind

if TYPE_CHECKING:
    from dockyard.registry.blob_uploads import BlobUploads
    from dockyard.registry.services import Registry
    from dockyard.storage.blobs import BlobStore

KIND = "sbom"


class SbomParamsInvalid(ValueError):
    pass


def sbom_params(params: dict[str, Any]) -> dict[str, Any]:
    from dockyard.scanning.sbom import ARTIFACT_TYPES

    repository, reference = params.get("repository"), params.get("reference")
    kind = params.get("format", "cyclonedx")
    platform = params.get("platform")
    if not isinstance(repository, str) or not repository:
        raise SbomParamsInvalid("params.repository: a repository name is required")
    if not isinstance(reference, str) or not reference:
        raise SbomParamsInvalid("params.reference: a tag or digest is required")
    if kind not in ARTIFACT_TYPES:
        raise SbomParamsInvalid(f"params.format: one of {', '.join(ARTIFACT_TYPES)}")
    if platform is not None and not isinstance(platform, str):
        raise SbomParamsInvalid("params.platform: a string such as linux/arm64")
    return {
        "repository": repository,
        "reference": reference,
        "format": kind,
        "platform": platform,
        "refresh": bool(params.get("refresh", False)),
    }


def sbom_kind(registry: Registry, blobs: BlobStore, uploads: BlobUploads) -> JobKind:
    def sbom(ctx: JobContext) -> dict[str, Any]:
        from dockyard.scanning.sboms import Sboms
        from dockyard.scanning.services import Inventory

        params = sbom_params(dict(ctx.params))
        sboms = Sboms(registry, blobs, uploads, Inventory(registry, blobs))
        found = sboms.sbom(
            params["repository"],
            params["reference"],
            params["format"],
            params["platform"],
            refresh=params["refresh"],
        )
        ctx.log(f"{params['format']} SBOM of {found.image}: referrer {found.referrer}")
        return {
            "repository": params["repository"],
            "image": found.image,
            "platform": found.platform,
            "format": params["format"],
            "referrer": found.referrer,
            "created": found.created,
            "bytes": len(found.document),
        }

    return JobKind(KIND, sbom, concurrency=2, timeout=timedelta(minutes=30), max_attempts=1)
