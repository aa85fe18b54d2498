"""The `replication_finished` webhook event of a run: one per local project the run read from (a push
policy) or wrote into (a pull policy), each with that project's artifacts."""

from __future__ import annotations

from typing import Any

from dockyard.projects.rbac import project_of
from dockyard.replication.interfaces import Direction, Policy, Run

MAX_ARTIFACTS = 50  # per event: a run of thousands of artifacts is summed up by its counters


def finished_events(policy: Policy, run: Run) -> dict[str, dict[str, Any]]:
    """{project: the event's data} for the local projects the run touched."""
    local = "source" if policy.direction is Direction.PUSH else "destination"
    by_project: dict[str, list[dict[str, Any]]] = {}
    for artifact in run.artifacts:
        name = str(artifact[local]).split("@")[0].rsplit(":", 1)[0]
        by_project.setdefault(project_of(name), []).append(artifact)
    if not by_project and policy.direction is Direction.PULL and policy.dest_namespace:
        by_project[policy.dest_namespace] = []  # a pull into a namespace that copied nothing yet
    return {project: _data(policy, run, artifacts) for project, artifacts in by_project.items()}


def _data(policy: Policy, run: Run, artifacts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "policy": policy.name,
        "run_id": run.id,
        "direction": policy.direction.value,
        "endpoint": policy.endpoint,
        "trigger": run.trigger,
        "status": run.status.value,
        "override": policy.override,
        "error": run.error,
        "counters": dict(run.counters),
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "artifacts": [
            {key: artifact.get(key) for key in ("source", "destination", "digest", "status")}
            for artifact in artifacts[:MAX_ARTIFACTS]
        ],
    }
