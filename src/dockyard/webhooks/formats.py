"""A webhook policy's request body for one outbox event, in its format (docs/webhooks.md):

- `harbor`: Harbor's webhook JSON (type, occur_at, operator, event_data.resources[].digest/tag/
  resource_url, event_data.repository{name, namespace, repo_full_name, repo_type});
- `cloudevents`: CloudEvents 1.0 in structured mode (`application/cloudevents+json`);
- `slack`: a Slack incoming-webhook message (`text` plus one mrkdwn block).

And the signature: `X-Dockyard-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from dockyard.webhooks.interfaces import EVENT_BY_ACTION, SIGNATURE_HEADER, EventType


@dataclass(frozen=True)
class Rendered:
    body: bytes
    content_type: str
    event: EventType


def signature(secret: str, body: bytes) -> str:
    """The value of X-Dockyard-Signature."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers_for(
    rendered: Rendered, event_id: str, secret: str | None, custom: dict[str, str]
) -> list[tuple[str, str]]:
    pairs = [(name, value) for name, value in custom.items()]
    pairs += [
        ("Content-Type", rendered.content_type),
        ("X-Dockyard-Event", rendered.event.name),
        ("X-Dockyard-Delivery", event_id),
    ]
    if secret:
        pairs.append((SIGNATURE_HEADER, signature(secret, rendered.body)))
    return pairs


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


def _time(payload: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(payload["timestamp"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return datetime.now(UTC)


def _host(payload: dict[str, Any]) -> str:
    """Where clients reach the registry: the event's URL (http.host), else the request's Host."""
    url = (payload.get("target") or {}).get("url")
    netloc = urlsplit(url).netloc if isinstance(url, str) else ""
    return netloc or str((payload.get("request") or {}).get("host") or "")


def _repository(full: str, public: bool, project: str) -> dict[str, Any]:
    namespace, _, name = full.partition("/")
    return {
        "name": name or full,
        "namespace": namespace or project,
        "repo_full_name": full,
        "repo_type": "public" if public else "private",
    }


def harbor_data(payload: dict[str, Any], project: str, public: bool) -> dict[str, Any]:
    """Harbor's `event_data` of the event."""
    target = payload.get("target") or {}
    action = payload.get("action")
    if action in ("push", "pull", "delete"):
        full = str(target.get("repository", ""))
        digest = target.get("digest")
        tag = target.get("tag")
        host = _host(payload)
        reference = f"@{digest}" if digest else f":{tag}"
        if tag and action != "delete":
            reference = f":{tag}"
        resource: dict[str, Any] = {
            "digest": digest or "",
            "tag": tag or "",
            "resource_url": f"{host}/{full}{reference}" if host else f"{full}{reference}",
        }
        if target.get("mediaType"):
            resource["mime_type"] = target["mediaType"]
        if target.get("size") is not None:
            resource["size"] = target["size"]
        return {"resources": [resource], "repository": _repository(full, public, project)}
    data = {key: value for key, value in target.items() if key != "project"}
    full = str(data.get("repository") or project)
    event_data: dict[str, Any] = {"repository": _repository(full, public, project), "custom_attributes": data}
    if action in ("quota_warning", "quota_exceeded"):
        resource = {"digest": data.get("digest", ""), "resource_url": ""}
        event_data["resources"] = [resource]
        event_data["custom_attributes"] = {"Details": _quota_details(action, data), **data}
    elif action == "retention":
        event_data["retention"] = {"project": project, **data}
    elif action == "immutable":
        event_data["resources"] = [{"digest": "", "tag": data.get("tag", ""), "resource_url": ""}]
    elif action == "scan":
        event_data["resources"] = [_scanned(payload, full, data)]
    elif action == "replication":
        event_data["replication"] = _replicated(data)
    return event_data


_JOB_STATUS = {"succeeded": "Success", "failed": "Failure", "cancelled": "Stopped"}


def _replicated(data: dict[str, Any]) -> dict[str, Any]:
    """Harbor's `event_data.replication` of a REPLICATION event, from a run's summary."""
    here = {"endpoint": "local", "registry_type": "dockyard"}
    there = {"endpoint": data.get("endpoint"), "registry_name": data.get("endpoint")}
    push = data.get("direction") == "push"
    artifacts = data.get("artifacts") or []

    def listed(ok: bool) -> list[dict[str, Any]]:
        return [
            {"type": "image", "status": "Success" if ok else "Failure", "name_tag": a.get("destination")}
            for a in artifacts
            if (a.get("status") in ("copied", "skipped", "deleted")) == ok
        ]

    return {
        "policy_name": data.get("policy"),
        "run_id": data.get("run_id"),
        "job_status": _JOB_STATUS.get(str(data.get("status")), str(data.get("status"))),
        "trigger_type": str(data.get("trigger", "")).upper(),
        "override_mode": data.get("override"),
        "execution_timestamp": data.get("started_at"),
        "src_resource": here if push else there,
        "dest_resource": there if push else here,
        "successful_artifact": listed(True),
        "failed_artifact": listed(False),
    }


# Harbor's scan_overview: keyed by the report's MIME type, severity as Harbor spells it.
_REPORT_MIME = "application/vnd.security.vulnerability.report; version=1.1"
_SEVERITIES = ("critical", "high", "medium", "low", "unknown")


def _scanned(payload: dict[str, Any], full: str, data: dict[str, Any]) -> dict[str, Any]:
    """The resource of a `scan_finished` event as Harbor's SCANNING_COMPLETED carries it."""
    host = _host(payload)
    digest = str(data.get("digest", ""))
    counts = {name: int(n) for name, n in (data.get("counts") or {}).items() if n}
    worst = next((name for name in _SEVERITIES if counts.get(name)), "none")
    overview: dict[str, Any] = {
        "scan_status": "Success" if data.get("status") == "done" else "Error",
        "severity": worst.capitalize(),
        "summary": {"total": sum(counts.values()), "summary": {k.capitalize(): v for k, v in counts.items()}},
    }
    reference = f"{full}@{digest}"
    return {
        "digest": digest,
        "tag": "",
        "resource_url": f"{host}/{reference}" if host else reference,
        "scan_overview": {_REPORT_MIME: overview},
    }


def _quota_details(action: str, data: dict[str, Any]) -> str:
    used, limit = data.get("used_bytes"), data.get("limit_bytes")
    if action == "quota_warning":
        return f"quota usage reached {data.get('warn_percent')}%: {used} of {limit} bytes"
    return f"adding {data.get('size')} bytes would exceed the quota: {used} of {limit} bytes used"


def summary(event: EventType, payload: dict[str, Any], project: str) -> str:
    """One line for people (Slack)."""
    target = payload.get("target") or {}
    actor = (payload.get("actor") or {}).get("name") or "someone"
    repo = target.get("repository", project)
    ref = target.get("tag") or target.get("digest") or ""
    at = f"{repo}:{ref}" if target.get("tag") else (f"{repo}@{ref}" if ref else str(repo))
    match event.name:
        case "push":
            return f"{actor} pushed {at}"
        case "pull":
            return f"{actor} pulled {at}"
        case "delete":
            return f"{actor} deleted {at}"
        case "quota_warning" | "quota_exceeded":
            return f"Project {project}: {_quota_details(event.action, target)}"
        case "retention_run":
            return (
                f"Retention run in project {project}: {target.get('deleted', 0)} tags deleted, "
                f"{target.get('kept', 0)} kept{' (dry run)' if target.get('dry_run') else ''}"
            )
        case "scan_finished":
            counts = ", ".join(f"{n} {name}" for name, n in (target.get("counts") or {}).items() if n)
            outcome = (counts or "no vulnerabilities") if target.get("status") == "done" else "failed"
            return f"Scan of {repo}@{target.get('digest')} finished: {outcome}"
        case "replication_finished":
            counters = target.get("counters") or {}
            return (
                f"Replication {target.get('policy')} (run {target.get('run_id')}) {target.get('status')}: "
                f"{counters.get('artifacts_copied', 0)} copied, {counters.get('artifacts_failed', 0)} failed"
            )
        case "immutable_refusal":
            return f"Refused to {target.get('operation', 'change')} immutable tag {repo}:{target.get('tag')}"
    return f"{event.name} in project {project}"


def render(
    fmt: str, payload: dict[str, Any], action: str, project: str, public: bool, source: str
) -> Rendered:
    """The body of one event for a policy of format `fmt`. `source`: the registry's URL."""
    event = EVENT_BY_ACTION[action]
    occurred = _time(payload)
    operator = (payload.get("actor") or {}).get("name") or ""
    if fmt == "harbor":
        body = {
            "type": event.harbor,
            "occur_at": int(occurred.timestamp()),
            "operator": operator,
            "event_data": harbor_data(payload, project, public),
        }
        return Rendered(_dumps(body), "application/json", event)
    if fmt == "cloudevents":
        target = payload.get("target") or {}
        subject = target.get("repository") or project
        if target.get("tag"):
            subject = f"{subject}:{target['tag']}"
        elif target.get("digest"):
            subject = f"{subject}@{target['digest']}"
        body = {
            "specversion": "1.0",
            "id": str(payload.get("id", "")),
            "source": f"{source.rstrip('/')}/api/v1/projects/{project}",
            "type": event.cloudevents,
            "subject": subject,
            "time": occurred.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": {"operator": operator, "project": project, **harbor_data(payload, project, public)},
        }
        return Rendered(_dumps(body), "application/cloudevents+json", event)
    text = summary(event, payload, project)
    slack = {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*dockyard* ({event.name}): {text}"}}
        ],
    }
    return Rendered(_dumps(slack), "application/json", event)
