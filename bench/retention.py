"""`python -m bench.retention [--db sqlite|postgresql]`: how long a retention run takes (docs/retention.md).

Seeds one project of 20 repositories, each with 100 tagged images (2,000 tags) and 20 untagged ones,
a quota (so deletes release usage) and one immutable tag per repository; the policy keeps the 10
latest and lets untagged ones go. Then it times a dry run and a real run of the same set, in process
on the services `dockyard serve` builds (the job worker runs exactly this), and prints the counts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

REPOSITORIES = 20
TAGGED = 100  # per repository: 2,000 tags in all
UNTAGGED = 20  # per repository
KEEP = 10
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
POLICY = {
    "rules": [
        {"action": "latestPushedK", "count": KEEP, "tags": {"match": "**", "untagged": True}},
    ]
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="retention-bench-")))
        sections: dict[str, Any] = {}
        if args.db == "postgresql":
            from tests.support.postgres import start_postgres  # the suite's launcher, as bench/gc.py

            cluster = start_postgres()
            stack.callback(cluster.stop)
            sections["database"] = {"url": cluster.create_database("retentionbench")}
        figures = run(workdir, sections)
    print(json.dumps({"database": args.db, **figures}, indent=2))
    return 0


def run(workdir: Path, sections: dict[str, Any]) -> dict[str, Any]:
    import yaml

    from dockyard.app import build_services
    from dockyard.config.loader import load_settings
    from dockyard.retention.interfaces import Outcome, parse_policy
    from dockyard.retention.services import RetentionExecutor, RetentionPolicies, RetentionRuns

    config_path = workdir / "config.yml"
    config = {"datadir": str(workdir / "data"), "auth": {"enabled": False}, **sections}
    config_path.write_text(yaml.safe_dump(config))
    services = build_services(load_settings(config_path, {}))
    try:
        started = time.monotonic()
        _seed(services)
        seed_seconds = time.monotonic() - started
        policies = RetentionPolicies(services.db)
        policies.put("bench", parse_policy(POLICY))
        executor = RetentionExecutor(
            services.db,
            services.registry,
            services.immutability,
            policies,
            RetentionRuns(services.db),
            audit=services.audit,
        )
        figures: dict[str, Any] = {"seed_seconds": round(seed_seconds, 2)}
        for dry_run in (True, False):
            started = time.monotonic()
            report = executor.run("bench", dry_run=dry_run)
            seconds = time.monotonic() - started
            figures["dry_run" if dry_run else "real_run"] = {
                "seconds": round(seconds, 2),
                "deleted": report.count(Outcome.DELETED),
                "kept": report.count(Outcome.KEPT),
                "kept_immutable": report.count(Outcome.KEPT_IMMUTABLE),
                "skipped": report.count(Outcome.SKIPPED),
            }
        figures["tags_left"] = sum(
            len(services.registry.list_tags(f"bench/repo-{n:02d}", None, None).items)
            for n in range(REPOSITORIES)
        )
        figures["quota_used_bytes"] = services.quotas.get("bench").used_bytes
        return figures
    finally:
        services.close()


def _seed(services: Any) -> None:
    from dockyard.content.digest import digest_of
    from dockyard.projects.quotas import charge
    from dockyard.projects.services import ProjectService
    from dockyard.registry.models import Manifest, ManifestReference, Repository, RepositoryBlob, Tag
    from dockyard.storage.models import Blob

    project_id = ProjectService(services.db).ensure("bench").id
    services.quotas.set("bench", 10 * 1024**3)
    services.immutability.add("bench", "**", "v001")
    now = datetime.now(UTC)
    with services.db.write() as connection:
        for n in range(REPOSITORIES):
            name = f"bench/repo-{n:02d}"
            repository_id = connection.execute(
                insert(Repository).values(name=name, created_at=now, project_id=project_id)
            ).inserted_primary_key[0]  # type: ignore[index]
            for serial in range(TAGGED + UNTAGGED):
                config = json.dumps({"repo": name, "serial": serial}).encode()
                config_digest = digest_of(config)
                body = json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": MANIFEST_TYPE,
                        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
                        "layers": [],
                    }
                ).encode()
                digest = digest_of(body)
                # Untagged ones first: the oldest, so the 10 latest are tagged ones.
                pushed = now - timedelta(hours=TAGGED + UNTAGGED - serial)
                connection.execute(
                    insert(Blob).values(digest=config_digest, size=len(config), created_at=now)
                )
                connection.execute(
                    insert(RepositoryBlob).values(
                        repository_id=repository_id, digest=config_digest, created_at=now
                    )
                )
                manifest_id = connection.execute(
                    insert(Manifest).values(
                        repository_id=repository_id,
                        digest=digest,
                        media_type=MANIFEST_TYPE,
                        size=len(body),
                        content=body,
                        created_at=pushed,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                connection.execute(
                    insert(ManifestReference).values(
                        manifest_id=manifest_id, digest=config_digest, kind="blob"
                    )
                )
                charge(connection, project_id, config_digest, len(config))
                charge(connection, project_id, digest, len(body), what="manifest")
                if serial >= UNTAGGED:
                    tag = f"v{serial - UNTAGGED + 1:03d}"
                    connection.execute(
                        insert(Tag).values(
                            repository_id=repository_id, name=tag, manifest_id=manifest_id, updated_at=pushed
                        )
                    )


if __name__ == "__main__":
    raise SystemExit(main())
