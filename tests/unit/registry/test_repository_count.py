"""A project's repository count (`RegistryQueries.count_repositories`, the `repository_count` of GET
/api/v1/projects/{name}) is a COUNT of the names in that project: `_` and `%` in a project's name
are themselves, not LIKE's wildcards, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from dockyard.db.session import Database
from dockyard.registry.models import Repository
from dockyard.registry.queries import RegistryQueries, Window

pytestmark = pytest.mark.db_independent  # `database` runs each test on both databases

NAMES = ("a_b/app", "a_b/tools/cli", "axb/app", "a_bc/app", "a_b", "a%b/app", "ab/app", "a//b")


def test_a_project_counts_its_own_repositories_only(database: Database) -> None:
    with database.write() as connection:
        connection.execute(insert(Repository), [{"name": name} for name in NAMES])
    queries = RegistryQueries(database)
    counts = {
        project: queries.count_repositories(project) for project in ("a_b", "axb", "a%b", "ab", "a", "zz")
    }
    assert counts == {"a_b": 3, "axb": 1, "a%b": 1, "ab": 1, "a": 1, "zz": 0}
    for project in counts:  # as the listing of the project's repositories has it
        assert queries.list_repositories(Window(limit=1), project=project)[1] == counts[project]
