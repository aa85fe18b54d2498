"""Usernames are unique whatever their case: `Admin` can no longer stand beside `admin`

Names that clash today keep the oldest account's spelling; each later one is renamed to
`<name>-<id>` (its password, tokens and memberships unchanged) and the rename is logged, so an
administrator can tell its owner or delete it.

Revision ID: 0015_usernames_any_case
Revises: 0014_login_sessions
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0015_usernames_any_case"
down_revision = "0014_login_sessions"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
MAX_USERNAME = 255


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, username FROM users ORDER BY id")).all()
    taken = {name.lower() for _, name in rows}
    first_of: set[str] = set()
    for user_id, name in rows:
        if name.lower() not in first_of:
            first_of.add(name.lower())
            continue
        renamed = _free_name(name, user_id, taken)
        connection.execute(
            sa.text("UPDATE users SET username = :renamed WHERE id = :id"),
            {"renamed": renamed, "id": user_id},
        )
        taken.add(renamed.lower())
        log.warning(
            "user %r (id %d) renamed to %r: usernames are now unique whatever their case",
            name,
            user_id,
            renamed,
        )
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)


def _free_name(name: str, user_id: int, taken: set[str]) -> str:
    for attempt in range(1000):
        suffix = f"-{user_id}" if attempt == 0 else f"-{user_id}-{attempt}"
        candidate = name[: MAX_USERNAME - len(suffix)] + suffix
        if candidate.lower() not in taken:
            return candidate
    raise RuntimeError(f"no free name for user {name!r} (id {user_id})")


def downgrade() -> None:
    op.drop_index("uq_users_username_lower", table_name="users")
