"""Replication: policies, runs and each run's artifacts

Revision ID: 0013_replication
Revises: 0012_notation_trust_policies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_replication"
down_revision = "0012_notation_trust_policies"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "replication_policies",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("endpoint_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("repositories", sa.String(length=255), nullable=False),
        sa.Column("tags", sa.String(length=255), nullable=False),
        sa.Column("dest_namespace", sa.String(length=128), nullable=True),
        sa.Column("trigger", sa.String(length=8), nullable=False),
        sa.Column("schedule", sa.String(length=128), nullable=True),
        sa.Column("scheduled_at", _TIME, nullable=True),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.Column("propagate_deletes", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("bandwidth", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["registry_endpoints.id"],
            name=op.f("fk_replication_policies_endpoint_id_registry_endpoints"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replication_policies")),
        sa.UniqueConstraint("name", name="uq_replication_policies_name"),
    )
    with op.batch_alter_table("replication_policies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_replication_policies_endpoint_id"), ["endpoint_id"], unique=False
        )

    op.create_table(
        "replication_runs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("policy_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("trigger", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME, nullable=True),
        sa.Column("artifacts_copied", sa.Integer(), nullable=False),
        sa.Column("artifacts_skipped", sa.Integer(), nullable=False),
        sa.Column("artifacts_failed", sa.Integer(), nullable=False),
        sa.Column("artifacts_deleted", sa.Integer(), nullable=False),
        sa.Column("blobs_copied", sa.Integer(), nullable=False),
        sa.Column("blobs_mounted", sa.Integer(), nullable=False),
        sa.Column("blobs_skipped", sa.Integer(), nullable=False),
        sa.Column("manifests_copied", sa.Integer(), nullable=False),
        sa.Column("bytes_copied", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["policy_id"],
            ["replication_policies.id"],
            name=op.f("fk_replication_runs_policy_id_replication_policies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replication_runs")),
    )
    with op.batch_alter_table("replication_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_replication_runs_job_id"), ["job_id"], unique=False)
        batch_op.create_index("ix_replication_runs_policy", ["policy_id", "id"], unique=False)

    op.create_table(
        "replication_run_artifacts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("destination", sa.String(length=512), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("blobs", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["replication_runs.id"],
            name=op.f("fk_replication_run_artifacts_run_id_replication_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replication_run_artifacts")),
    )
    with op.batch_alter_table("replication_run_artifacts", schema=None) as batch_op:
        batch_op.create_index("ix_replication_run_artifacts_run", ["run_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("replication_run_artifacts", schema=None) as batch_op:
        batch_op.drop_index("ix_replication_run_artifacts_run")

    op.drop_table("replication_run_artifacts")
    with op.batch_alter_table("replication_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_replication_runs_policy")
        batch_op.drop_index(batch_op.f("ix_replication_runs_job_id"))

    op.drop_table("replication_runs")
    with op.batch_alter_table("replication_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replication_policies_endpoint_id"))

    op.drop_table("replication_policies")
