"""The "scan" job kind: scan an artifact and store the result, or rescan what an import made stale.

- `{"repository": "team/app", "digest": "sha256:..."}` (or `"reference"`: a tag): one artifact. Queued
  by `POST /api/v1/repositories/{name}/artifacts/{ref}/scan`, by a push to a project with
  `scan_on_push`, or by `dockyard job run scan`.
- `{"rescan": "stale"}`: every artifact whose stored scan was made with an older vulnerability database
  than the current one (at most RESCAN_LIMIT, the most recently scanned first). `dockyard vulndb
  import` queues one when it changed the database. `{"rescan": "all"}`: every artifact scanned (same
  bound): a schedule of the kind (`PUT /api/v1/jobs/schedules/scan` with these params) rescans on a
  schedule.

- `"scanner"` with an artifact: scan with that registered external scanner (scans/adapters.py), or
  `"built-in"`; without it, the default scanner (`dockyard scanner default`). The scanner API's own
  requests (api/scanner.py) say `"built-in"`.

- `{"recount": "team"}` (`"*"`: every project): apply the allowlist as it is now to the stored findings
  and counts, without scanning; queued by every allowlist change.

A scan that cannot read the image is stored as failed with the reason; the job succeeds (its result
says so), since running it again would fail the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.scans.interfaces import BUILT_IN, ScanParamsInvalid

if TYPE_CHECKING:
    from dockyard.db.session import Database
    from dockyard.registry.services import Registry
    from dockyard.scans.adapters import Adapters
    from dockyard.storage.blobs import BlobStore

KIND = "scan"


def scan_params(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("recount") is not None:
        if not isinstance(params["recount"], str) or not params["recount"]:
            raise ScanParamsInvalid('params.recount: a project name, or "*" for every project')
        return {"recount": params["recount"]}
    if params.get("rescan") is not None:
        if params["rescan"] not in ("stale", "all"):
            raise ScanParamsInvalid('params.rescan: "stale" or "all"')
        return {"rescan": params["rescan"]}
    repository = params.get("repository")
    reference = params.get("digest") or params.get("reference")
    if not isinstance(repository, str) or not repository:
        raise ScanParamsInvalid("params.repository: a repository name is required")
    if not isinstance(reference, str) or not reference:
        raise ScanParamsInvalid("params.digest (or params.reference): the artifact is required")
    scanner = params.get("scanner")
    if scanner is not None and (not isinstance(scanner, str) or not scanner):
        raise ScanParamsInvalid('params.scanner: a registered scanner\'s name, or "built-in"')
    checked = {"repository": repository, "reference": reference}
    return checked if scanner is None else {**checked, "scanner": scanner}


def scan_kind(
    db: Database,
    registry: Registry,
    blobs: BlobStore,
    on_change: Callable[[str], None] | None = None,
    adapters: Callable[[], Adapters] | None = None,
) -> JobKind:
    """`on_change`: called after each stored result (the pull gates' cached decisions go). `adapters`:
    builds what calls external scanners (scans/adapters.py: httpx and the token service load then,
    not when the runner starts); a single artifact's scan uses `params.scanner`, else the default
    scanner (scans.scanners), else the built-in one. Rescans and recounts are built-in only."""

    def scan(ctx: JobContext) -> dict[str, Any]:
        from dockyard.scans.services import Scans
        from dockyard.vulndb.services import VulnDB

        params = scan_params(dict(ctx.params))
        vulndb = VulnDB(db)
        scans = Scans(db, registry, blobs, vulndb, on_change=on_change)
        if "recount" in params:
            scope = None if params["recount"] == "*" else params["recount"]
            counted = scans.recount_scope(scope)
            ctx.log(f"allowlist applied again to {counted} stored scans")
            return {"recounted": counted}
        if "rescan" in params:
            version = vulndb.status().version
            # "all": every artifact scanned (with this version too), at most RESCAN_LIMIT of them.
            stale = scans.stale(version + 1 if params["rescan"] == "all" else version)
            ctx.log(f"{len(stale)} artifacts to rescan ({params['rescan']}; database version {version})")
            results = {"done": 0, "failed": 0, "gone": 0}
            for done, (repository, digest) in enumerate(stale):
                ctx.check_cancelled()
                ctx.progress(done, len(stale))
                try:
                    report = scans.scan(repository, digest, job_id=ctx.job_id)
                except Exception as exc:  # deleted since, or a layer that breaks the walker
                    ctx.log(f"{repository}@{digest}: {exc}")
                    results["gone"] += 1
                    continue
                results[report.summary.status] = results.get(report.summary.status, 0) + 1
            ctx.progress(len(stale), len(stale))
            return {"vulndb_version": version, "artifacts": len(stale), **results}
        scanner = _scanner(params, db) if adapters is not None else BUILT_IN
        if scanner == BUILT_IN or adapters is None:
            report = scans.scan(params["repository"], params["reference"], job_id=ctx.job_id)
        else:
            ctx.log(f"scanning with the external scanner {scanner}")
            run = adapters().run(scanner, params["repository"])
            report = scans.scan_external(params["repository"], params["reference"], scanner, run, ctx.job_id)
        summary = report.summary
        ctx.log(f"{report.repository}@{report.digest}: {summary.status} {summary.reason}".rstrip())
        return {
            "repository": report.repository,
            "digest": report.digest,
            "status": summary.status,
            "reason": summary.reason,
            "counts": summary.counts,
            "vulndb_version": summary.vulndb_version,
            "scanner": scanner,
        }

    return JobKind(KIND, scan, concurrency=2, timeout=timedelta(hours=2), max_attempts=1)


def _scanner(params: dict[str, Any], db: Database) -> str:
    from dockyard.scans.scanners import Scanners

    if params.get("scanner"):
        return str(params["scanner"])
    return Scanners(db).default_name()
