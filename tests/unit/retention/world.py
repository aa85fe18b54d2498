"""A project `team` with repositories, manifests and tags written straight into the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from dockyard.audit.services import CollectingRecorder
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.db.session import Database
from dockyard.projects.services import ProjectService
from dockyard.registry.models import Manifest, Repository, Tag
from dockyard.retention.interfaces import parse_policy
from dockyard.retention.services import RetentionExecutor, RetentionPolicies, RetentionRuns
from dockyard.storage.driver import build_driver
from tests.support.registry import registry_parts

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEEP_LAST_3 = parse_policy({"rules": [{"action": "latestPushedK", "count": 3}]})


class World:
    """A project `team` with repositories, manifests and tags written straight into the tables."""

    def __init__(self, db: Database, delete_enabled: bool = True) -> None:
        self.db = db
        self.feed = InProcessChangeFeed()
        parts = registry_parts(db, build_driver("inmemory"), self.feed, delete_enabled=delete_enabled)
        self.registry, self.quotas, self.immutability = parts.registry, parts.quotas, parts.immutability
        self.projects = ProjectService(db)
        self.policies = RetentionPolicies(db)
        self.runs = RetentionRuns(db)
        self.audit = CollectingRecorder()
        self.executor = RetentionExecutor(
            db,
            self.registry,
            self.immutability,
            self.policies,
            self.runs,
            clock=lambda: NOW,
            audit=self.audit,
        )
        self.serial = 0

    def repository(self, name: str) -> int:
        project = self.projects.ensure(name.split("/", 1)[0])
        with self.db.write() as connection:
            return int(
                connection.execute(
                    insert(Repository).values(name=name, created_at=NOW, project_id=project.id)
                ).inserted_primary_key[0]  # type: ignore[index]
            )

    def manifest(
        self,
        repository_id: int,
        *tags: str,
        days_ago: float,
        pulled_days_ago: float | None = None,
        subject: str | None = None,
    ) -> str:
        self.serial += 1
        digest = f"sha256:{self.serial:064x}"
        pushed = NOW - timedelta(days=days_ago)
        with self.db.write() as connection:
            manifest_id = connection.execute(
                insert(Manifest).values(
                    repository_id=repository_id,
                    digest=digest,
                    media_type="application/vnd.oci.image.manifest.v1+json",
                    subject_digest=subject,
                    size=2,
                    content=b"{}",
                    created_at=pushed,
                    last_pulled_at=None if pulled_days_ago is None else NOW - timedelta(days=pulled_days_ago),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            for tag in tags:
                connection.execute(
                    insert(Tag).values(
                        repository_id=repository_id, name=tag, manifest_id=manifest_id, updated_at=pushed
                    )
                )
        return digest

    def tags(self, name: str) -> list[str]:
        return list(self.registry.list_tags(name, None, None).items)

    def manifests(self, repository_id: int) -> set[str]:
        with self.db.read() as connection:
            return set(
                connection.scalars(select(Manifest.digest).where(Manifest.repository_id == repository_id))
            )


def five_versions(world: World, name: str) -> int:
    """v1..v5 pushed a day apart (v5 newest, a day ago)."""
    repository_id = world.repository(name)
    for n in range(1, 6):
        world.manifest(repository_id, f"v{n}", days_ago=6 - n)
    return repository_id
