"""Replication (system administrators only, like the endpoints it uses): policies, runs queued as
`replicate` jobs, their records with each artifact's outcome, and cancelling them. Every change, run
and cancel is audited (resource `replication_policy`, named by the policy). See docs/replication.md."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.ids import MAX_LONG_ID, LongResourceId
from dockyard.api.management.listing import ListParams, list_params, set_page_headers
from dockyard.api.management.security import Admin
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.jobs.queue import JobQueue
from dockyard.replication.interfaces import NAME_PATTERN, Direction, Policy, Run, Trigger
from dockyard.replication.pushes import KIND  # the job kind, without the job's code
from dockyard.replication.services import UNSET, ReplicationPolicies, ReplicationRuns

router = APIRouter(tags=["replication"])
Services = Annotated[ManagementServices, Depends(services_of)]
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="The policy's name.")]
RESOURCE = ResourceType.REPLICATION_POLICY


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=1024)
    direction: Direction = Field(
        description="push: this registry to the endpoint; pull: the endpoint to this one."
    )
    endpoint: str = Field(min_length=1, max_length=64, description="A registry endpoint's name.")
    repositories: str = Field(
        default="**", max_length=255, description="Doublestar glob on source repositories."
    )
    tags: str = Field(default="**", max_length=255, description="Doublestar glob on source tags.")
    dest_namespace: str | None = Field(
        default=None,
        max_length=128,
        description="Replaces the first component of each repository name on the destination.",
    )
    trigger: Trigger = Trigger.MANUAL
    schedule: str | None = Field(default=None, max_length=128, description="For the cron trigger (UTC).")
    override: bool = Field(default=True, description="Replace a destination tag that points elsewhere.")
    propagate_deletes: bool = Field(
        default=False, description="Delete destination tags gone from the source."
    )
    enabled: bool = True
    concurrency: int = Field(default=8, description="Artifacts a run copies at once (1 to 32).")
    bandwidth: int | None = Field(
        default=None,
        description="Bytes per second a run's blob copies take together (at least 65536); null: no limit.",
    )
    artifact_types: list[str] = Field(
        default_factory=list,
        description=(
            "Artifact types to copy (any of them): image, signature, sbom, attestation, chart, or a media "
            "type glob on the manifest's artifactType / config mediaType. Empty: every type."
        ),
    )
    labels: list[str] = Field(
        default_factory=list,
        description="key=value globs on the image config's labels, all of which must hold (key: present).",
    )


class PolicyPatch(BaseModel):
    """Only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=1024)
    direction: Direction | None = None
    endpoint: str | None = Field(default=None, min_length=1, max_length=64)
    repositories: str | None = Field(default=None, max_length=255)
    tags: str | None = Field(default=None, max_length=255)
    dest_namespace: str | None = Field(default=None, max_length=128)
    trigger: Trigger | None = None
    schedule: str | None = Field(default=None, max_length=128)
    override: bool | None = None
    propagate_deletes: bool | None = None
    enabled: bool | None = None
    concurrency: int | None = None
    bandwidth: int | None = None  # null: no limit
    artifact_types: list[str] | None = None
    labels: list[str] | None = None


class PolicyOut(BaseModel):
    name: str
    description: str
    direction: Direction
    endpoint: str
    repositories: str
    tags: str
    dest_namespace: str | None
    trigger: Trigger
    schedule: str | None
    override: bool
    propagate_deletes: bool
    enabled: bool
    concurrency: int
    bandwidth: int | None
    artifact_types: list[str]
    labels: list[str]
    created_at: datetime | None
    updated_at: datetime | None


class RunQueued(BaseModel):
    job_id: int
    policy: str


class RunOut(BaseModel):
    id: int
    policy: str
    job_id: int | None
    trigger: str
    status: str = Field(description="running, succeeded, failed or cancelled")
    started_at: datetime
    finished_at: datetime | None
    counters: dict[str, int]
    error: str | None


class ArtifactOut(BaseModel):
    source: str
    destination: str
    digest: str | None
    status: str = Field(description="copied, skipped, failed or deleted")
    blobs: int
    bytes: int
    error: str | None
    finished_at: datetime


class RunDetailOut(RunOut):
    artifacts: list[ArtifactOut]


@router.get("/replication/policies", response_model=list[PolicyOut])
def list_policies(principal: Admin, services: Services) -> list[PolicyOut]:
    return [_out(policy) for policy in ReplicationPolicies(services.db).all()]


@router.post("/replication/policies", response_model=PolicyOut, status_code=201)
def create_policy(body: PolicyIn, request: Request, principal: Admin, services: Services) -> PolicyOut:
    detail = body.model_dump(mode="json", exclude={"name"})
    with audited(services, request, principal, AuditAction.CREATE, RESOURCE, body.name, detail):
        fields = body.model_dump()
        fields.update(artifact_types=tuple(body.artifact_types), labels=tuple(body.labels))
        created = ReplicationPolicies(services.db).create(Policy(**fields))
    return _out(created)


@router.get("/replication/policies/{name}", response_model=PolicyOut)
def get_policy(name: Name, principal: Admin, services: Services) -> PolicyOut:
    return _out(ReplicationPolicies(services.db).get(name))


@router.patch("/replication/policies/{name}", response_model=PolicyOut)
def update_policy(
    name: Name, body: PolicyPatch, request: Request, principal: Admin, services: Services
) -> PolicyOut:
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    for key in PolicyPatch.model_fields:
        value = getattr(body, key)
        if key not in given:
            changes[key] = UNSET
        elif value is None and key not in ("dest_namespace", "schedule", "bandwidth"):
            changes[key] = UNSET  # null on a field that cannot be null: unchanged
        else:
            changes[key] = tuple(value) if isinstance(value, list) else value
    detail = {key: value for key, value in body.model_dump(mode="json").items() if key in given}
    with audited(services, request, principal, AuditAction.UPDATE, RESOURCE, name, detail):
        updated = ReplicationPolicies(services.db).update(name, **changes)
    return _out(updated)


@router.delete("/replication/policies/{name}", status_code=204)
def delete_policy(name: Name, request: Request, principal: Admin, services: Services) -> Response:
    """The policy and its run history (a running run goes on to its end)."""
    with audited(services, request, principal, AuditAction.DELETE, RESOURCE, name):
        ReplicationPolicies(services.db).delete(name)
    return Response(status_code=204)


@router.post("/replication/policies/{name}/run", response_model=RunQueued, status_code=202)
def run_policy(name: Name, request: Request, principal: Admin, services: Services) -> RunQueued:
    """Queue a run now (whatever the policy's trigger, disabled or not); follow it at
    /replication/runs?policy={name} or /jobs/{job_id}."""
    with audited(
        services, request, principal, AuditAction.CREATE, RESOURCE, name, {"run": "manual"}
    ) as extra:
        ReplicationPolicies(services.db).get(name)
        job_id = _queue(services).enqueue(KIND, {"policy": name, "trigger": "manual"})
        extra["job_id"] = job_id
    return RunQueued(job_id=job_id, policy=name)


@router.get("/replication/runs", response_model=list[RunOut])
def list_runs(
    request: Request,
    response: Response,
    principal: Admin,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(("id",), "-id"))],
    policy: Annotated[str | None, Query(max_length=64, description="Only this policy's runs.")] = None,
    # A job id is a BIGINT: past it, SQLite's driver overflowed (a 500 the fuzzer found).
    job_id: Annotated[
        int | None, Query(ge=1, le=MAX_LONG_ID, description="Only the runs of this job.")
    ] = None,
) -> list[RunOut]:
    """Newest first; each artifact's outcome at /replication/runs/{id}."""
    runs, total = ReplicationRuns(services.db).page(policy, params.limit, params.offset, job_id=job_id)
    set_page_headers(request, response, params, total)
    return [_run_out(run) for run in runs]


@router.get("/replication/runs/{run_id}", response_model=RunDetailOut)
def get_run(run_id: LongResourceId, principal: Admin, services: Services) -> RunDetailOut:
    run = ReplicationRuns(services.db).get(run_id)
    return RunDetailOut(
        **_run_out(run).model_dump(), artifacts=[ArtifactOut(**item) for item in run.artifacts]
    )


@router.post("/replication/runs/{run_id}/cancel", response_model=RunOut, status_code=202)
def cancel_run(run_id: LongResourceId, request: Request, principal: Admin, services: Services) -> RunOut:
    """Ask the run's job to stop: it stops between two blobs (or within a few MiB of one) and the run
    ends `cancelled`; a run that failed and waits for its retry is not retried. A 409 when its job has
    finished (nothing to stop)."""
    runs = ReplicationRuns(services.db)
    run = runs.get(run_id, artifacts=False)
    detail = {"cancel": run_id, "job_id": run.job_id}
    with audited(services, request, principal, AuditAction.UPDATE, RESOURCE, run.policy, detail):
        queue = _queue(services)
        if run.job_id is None or queue.get(run.job_id).finished:
            raise ApiError(
                409, f"replication run {run_id} has finished ({run.status.value}): nothing to stop"
            )
        queue.cancel(run.job_id)
    return _run_out(runs.get(run_id, artifacts=False))


def _queue(services: ManagementServices) -> JobQueue:
    if services.jobs is None:
        raise ApiError(503, "the job queue is not available on this server")
    return services.jobs


def _out(policy: Policy) -> PolicyOut:
    return PolicyOut(
        name=policy.name,
        description=policy.description,
        direction=policy.direction,
        endpoint=policy.endpoint,
        repositories=policy.repositories,
        tags=policy.tags,
        dest_namespace=policy.dest_namespace,
        trigger=policy.trigger,
        schedule=policy.schedule,
        override=policy.override,
        propagate_deletes=policy.propagate_deletes,
        enabled=policy.enabled,
        concurrency=policy.concurrency,
        bandwidth=policy.bandwidth,
        artifact_types=list(policy.artifact_types),
        labels=list(policy.labels),
        created_at=policy.created_at,
        updated_at=policy.updated_at,
    )


def _run_out(run: Run) -> RunOut:
    return RunOut(
        id=run.id,
        policy=run.policy,
        job_id=run.job_id,
        trigger=run.trigger,
        status=run.status.value,
        started_at=run.started_at,
        finished_at=run.finished_at,
        counters=run.counters,
        error=run.error,
    )
