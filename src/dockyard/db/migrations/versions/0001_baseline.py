"""The schema, as first released: every table, index and constraint of the models

The development history before the first release (seventeen revisions, with merges and backfills for
databases that never shipped) was squashed into this one baseline. A database stamped with one of those
revisions (a development build's) is not upgraded: recreate it. From here the history is linear
(tests/unit/db/test_migrations.py refuses a second head) and the migrated schema must equal the models.

Names follow the naming convention in dockyard.db.base; timestamps are UTC (`UTCDateTime` stores
`DateTime(timezone=True)`). Tables are grouped by the package whose models.py declares them, parents
before children.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
DIGEST = sa.String(160)  # "sha512:" + 128 hex, with room
# Ids of the tables that grow for good (audit log, job queue, retention runs): bigint on PostgreSQL;
# SQLite only autoincrements an INTEGER PRIMARY KEY.
ID64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _storage()
    _accounts()
    _auth()
    _audit()
    _projects()
    _registry()
    _jobs()
    _retention()


def _storage() -> None:
    op.create_table(
        "blobs",
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("unreferenced_at", TIMESTAMP, nullable=True),  # garbage collection's window (docs/gc.md)
        sa.Column("deleting_since", TIMESTAMP, nullable=True),  # the tombstone while GC deletes the bytes
        sa.PrimaryKeyConstraint("digest", name="pk_blobs"),
    )
    op.create_index("ix_blobs_created_at", "blobs", ["created_at"])

    op.create_table(
        "uploads",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(300), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("storage_token", sa.String(64), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
    )
    op.create_index("ix_uploads_project", "uploads", ["project"])
    op.create_index("ix_uploads_created_at", "uploads", ["created_at"])


def _accounts() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("display_name", sa.String(255), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("directory_admin", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("last_login_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    # Unique whatever the case: `Admin` cannot stand beside `admin`.
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)

    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_groups"),
        sa.UniqueConstraint("name", name="uq_groups_name"),
    )

    op.create_table(
        "user_groups",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "group_id", name="pk_user_groups"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_user_groups_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name="fk_user_groups_group_id_groups", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_user_groups_group_id", "user_groups", ["group_id"])

    op.create_table(
        "personal_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_personal_tokens"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_personal_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("secret_hash", name="uq_personal_tokens_secret_hash"),
    )
    op.create_index("ix_personal_tokens_user_id", "personal_tokens", ["user_id"])

    op.create_table(
        "robots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(600), nullable=False),
        sa.Column("project", sa.String(255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_robots"),
        sa.UniqueConstraint("name", name="uq_robots_name"),
    )
    op.create_index("ix_robots_project", "robots", ["project"])

    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("credential", sa.String(128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_sessions"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_login_sessions_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_login_sessions_user_id", "login_sessions", ["user_id"])
    op.create_index("ix_login_sessions_expires_at", "login_sessions", ["expires_at"])


def _auth() -> None:
    op.create_table(
        "auth_signing_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("retired_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("kid", name="pk_auth_signing_keys"),
    )
    op.create_index("ix_auth_signing_keys_created_at", "auth_signing_keys", ["created_at"])


def _audit() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", ID64, autoincrement=True, nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=True),
        sa.Column("resource_name", sa.String(512), nullable=True),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"])
    op.create_index("ix_audit_events_resource", "audit_events", ["resource_type", "resource_name"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor", "occurred_at"])


def _projects() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("quota_limit_bytes", sa.BigInteger(), nullable=True),  # NULL: unlimited
        sa.Column("quota_used_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("quota_warn_percent", sa.Integer(), server_default="80", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.create_index("ix_projects_public", "projects", ["public"])

    op.create_table(
        "project_members",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_project_members"),
        sa.UniqueConstraint("project_id", "user_id", name="uq_project_members_project_user"),
        sa.UniqueConstraint("project_id", "group_id", name="uq_project_members_project_group"),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (group_id IS NULL)", name=op.f("ck_project_members_user_or_group")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_project_members_project_id_projects", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_project_members_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name="fk_project_members_group_id_groups", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_project_members_user_id", "project_members", ["user_id"])
    op.create_index("ix_project_members_group_id", "project_members", ["group_id"])

    op.create_table(
        "robot_permissions",
        sa.Column("robot_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("actions", sa.String(64), nullable=False),  # comma-separated: pull, push, delete
        sa.PrimaryKeyConstraint("robot_id", "project_id", name="pk_robot_permissions"),
        sa.ForeignKeyConstraint(
            ["robot_id"], ["robots.id"], name="fk_robot_permissions_robot_id_robots", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_robot_permissions_project_id_projects",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_robot_permissions_project_id", "robot_permissions", ["project_id"])

    op.create_table(
        "project_blobs",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "digest", name="pk_project_blobs"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_project_blobs_project_id_projects", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_project_blobs_digest", "project_blobs", ["digest"])
    op.create_index("ix_project_blobs_project_id_size", "project_blobs", ["project_id", "size"])

    op.create_table(
        "immutable_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("repository_pattern", sa.String(255), nullable=False),
        sa.Column("repository_excluding", sa.Boolean(), nullable=False),
        sa.Column("tag_pattern", sa.String(255), nullable=False),
        sa.Column("tag_excluding", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_immutable_rules"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_immutable_rules_project_id_projects", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_immutable_rules_project_id", "immutable_rules", ["project_id"])


def _registry() -> None:
    op.create_table(
        "repositories",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_repositories"),
        sa.UniqueConstraint("name", name="uq_repositories_name"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_repositories_project_id_projects", ondelete="RESTRICT"
        ),
    )
    op.create_index("ix_repositories_project_id", "repositories", ["project_id"])

    op.create_table(
        "repository_blobs",  # links: the repository may serve the blob
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("repository_id", "digest", name="pk_repository_blobs"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_repository_blobs_repository_id_repositories",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["digest"], ["blobs.digest"], name="fk_repository_blobs_digest_blobs"),
    )
    op.create_index("ix_repository_blobs_digest", "repository_blobs", ["digest"])

    op.create_table(
        "manifests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("artifact_type", sa.String(255), nullable=True),
        sa.Column("subject_digest", DIGEST, nullable=True),
        sa.Column("annotations", sa.JSON(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),  # the exact bytes pushed
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_pulled_at", TIMESTAMP, nullable=True),
        sa.Column("platform", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_manifests"),
        sa.UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_id"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_manifests_repository_id_repositories",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_manifests_digest", "manifests", ["digest"])
    op.create_index("ix_manifests_subject", "manifests", ["repository_id", "subject_digest"])  # referrers

    op.create_table(
        "manifest_references",  # a manifest's blobs (config, layers) and, for an index, child manifests
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),  # "blob" | "manifest"
        sa.PrimaryKeyConstraint("manifest_id", "digest", "kind", name="pk_manifest_references"),
        sa.ForeignKeyConstraint(
            ["manifest_id"],
            ["manifests.id"],
            name="fk_manifest_references_manifest_id_manifests",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_manifest_references_digest", "manifest_references", ["digest"])

    op.create_table(
        "tags",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("repository_id", "name", name="pk_tags"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_tags_repository_id_repositories",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifests.id"], name="fk_tags_manifest_id_manifests", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_tags_manifest_id", "tags", ["manifest_id"])


def _jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", ID64, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", TIMESTAMP, nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("progress_done", sa.BigInteger(), nullable=False),
        sa.Column("progress_total", sa.BigInteger(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("retry_of", ID64, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_status_run_after", "jobs", ["status", "run_after"])  # the claim query
    op.create_index("ix_jobs_kind_status", "jobs", ["kind", "status"])
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])

    op.create_table(
        "job_logs",
        sa.Column("id", ID64, autoincrement=True, nullable=False),
        sa.Column("job_id", ID64, nullable=False),
        sa.Column("logged_at", TIMESTAMP, nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_logs"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_logs_job_id_jobs", ondelete="CASCADE"),
    )
    op.create_index("ix_job_logs_job_id", "job_logs", ["job_id"])

    op.create_table(
        "job_schedules",
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("cron", sa.String(128), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", TIMESTAMP, nullable=False),
        sa.Column("last_job_id", ID64, nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),  # "default" | "api"
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("kind", name="pk_job_schedules"),
    )
    op.create_index("ix_job_schedules_next_run_at", "job_schedules", ["next_run_at"])


def _retention() -> None:
    op.create_table(
        "retention_policies",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("schedule", sa.String(128), nullable=True),  # cron, UTC
        sa.Column("scheduled_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("project_id", name="pk_retention_policies"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_retention_policies_project_id_projects",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "retention_runs",
        sa.Column("id", ID64, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_retention_runs"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_retention_runs_project_id_projects", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_retention_runs_project", "retention_runs", ["project_id", "id"])


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in (
        "retention_runs",
        "retention_policies",
        "job_schedules",
        "job_logs",
        "jobs",
        "tags",
        "manifest_references",
        "manifests",
        "repository_blobs",
        "repositories",
        "immutable_rules",
        "project_blobs",
        "robot_permissions",
        "project_members",
        "projects",
        "audit_events",
        "auth_signing_keys",
        "login_sessions",
        "robots",
        "personal_tokens",
        "user_groups",
        "groups",
        "users",
        "uploads",
        "blobs",
    ):
        op.drop_table(table)
