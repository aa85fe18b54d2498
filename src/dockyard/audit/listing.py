"""Reading the audit log: single events and hourly pull counts, filtered, sorted and paged as one list.

The two tables are read as one UNION ALL with the same columns; an hourly count is a `pull` of an
`artifact`, `ok`, at the start of its hour, with its `count`. Each branch is sorted and cut to the
rows the page can need before the union, so a page stays an index walk on a big log.

Every statement runs unchanged on SQLite and PostgreSQL: prefix matches use `substr` (SQLite's LIKE
ignores ASCII case, PostgreSQL's does not) and string sorts compare bytes on both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    RowMapping,
    Select,
    String,
    Table,
    bindparam,
    func,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy import cast as sql_cast

from dockyard.audit import models
from dockyard.audit.interfaces import (
    SORT_KEYS,
    AuditAction,
    AuditEvent,
    AuditFilter,
    AuditPage,
    AuditQueryInvalid,
    AuditResult,
    ResourceType,
)
from dockyard.db.dialect import bytewise_on
from dockyard.db.paging import check_window

EVENTS = cast(Table, models.AuditEventRow.__table__)
COUNTS = cast(Table, models.AuditPullCountRow.__table__)
HOUR = timedelta(hours=1)
_STRING_SORT_KEYS = frozenset(SORT_KEYS) - {"occurred_at"}
# What every hourly count is; a filter asking for anything else leaves the counts out.
_COUNTED = {"action": AuditAction.PULL, "resource_type": ResourceType.ARTIFACT, "result": AuditResult.OK}


def query_log(
    connection: Connection, filters: AuditFilter, page: int, page_size: int, sort: str
) -> AuditPage:
    """One page of the events and hourly counts matching `filters`, ordered by `sort` ("key" ascending,
    "-key" descending; keys in SORT_KEYS). Ties are broken by the order rows were written (single
    events and hourly counts apart)."""
    check_window((page - 1) * page_size, page_size)
    descending = sort.startswith("-")
    key = sort.removeprefix("-")
    if key not in SORT_KEYS:
        raise AuditQueryInvalid(f"cannot sort by {key!r} (one of: {', '.join(SORT_KEYS)})")
    values = _values(filters)
    given = frozenset(values)
    statements = _statements(key, descending, connection.dialect.name, given, _counted(filters))
    # The rows up to the end of this page, from each branch at most.
    values.update(window=page * page_size, page_size=page_size, offset=(page - 1) * page_size)
    total = sum(connection.execute(counting, values).scalar_one() for counting in statements.totals)
    rows = connection.execute(statements.listing, values).mappings()
    items = tuple(_event(row) for row in rows)
    return AuditPage(items=items, total=total, page=page, page_size=page_size)


@dataclass(frozen=True, slots=True)
class _Statements:
    totals: tuple[Select[Any], ...]  # the events', then the hourly counts' if they may match
    listing: Select[Any]


@functools.lru_cache(maxsize=256)
def _statements(
    key: str, descending: bool, dialect: str, given: frozenset[str], counted: bool
) -> _Statements:
    """The statements of one shape of query (which filters, which order), their values as parameters
    (`_values`, and `window`, `page_size`, `offset`): built once, as building them (the union's
    subqueries above all) cost several times the CPU of running them."""

    def ordered(columns: Any, hourly: Any = None) -> list[Any]:
        direction = "desc" if descending else "asc"
        column = columns[key]
        order = []
        if column is not None:  # None: a constant in this branch, nothing to sort by
            if key in _STRING_SORT_KEYS:
                column = bytewise_on(column, dialect)
            # NULLs (no resource, no address) last in both directions: the databases disagree otherwise.
            order.append(getattr(column, direction)().nulls_last())
        if hourly is not None:
            order.append(getattr(hourly, direction)())
        return [*order, getattr(columns["id"], direction)()]

    window = bindparam("window", type_=BigInteger)
    event_conditions = _event_conditions(given)
    branches = [_events(event_conditions).order_by(*ordered(EVENTS.c)).limit(window)]
    totals = [select(func.count()).select_from(EVENTS).where(*event_conditions)]
    if counted:
        count_conditions = _count_conditions(given)
        branches.append(_counts(count_conditions).order_by(*ordered(_count_columns())).limit(window))
        totals.append(select(func.count()).select_from(COUNTS).where(*count_conditions))
    # Each branch as a subquery of its own: SQLite takes no ORDER BY or LIMIT inside a compound SELECT.
    listing = union_all(*(select(branch.subquery()) for branch in branches)).subquery()
    page = (
        select(listing)
        .order_by(*ordered(listing.c, listing.c.hourly))
        .limit(bindparam("page_size", type_=BigInteger))
        .offset(bindparam("offset", type_=BigInteger))
    )
    return _Statements(tuple(totals), page)


def _values(filters: AuditFilter) -> dict[str, Any]:
    """The filters' parameters, each under its filter's name (`resource_name` a prefix, with its length)."""
    values: dict[str, Any] = {}
    for name in ("actor", "actor_kind", "client_ip", "action", "resource_type", "result"):
        value = getattr(filters, name)
        if value is not None:
            values[name] = str(value)
    if filters.resource_name:
        values["resource_name"] = filters.resource_name
        values["resource_name_length"] = len(filters.resource_name)
    if filters.since is not None:
        values["since"] = filters.since
        values["since_hour"] = filters.since - HOUR
    if filters.until is not None:
        values["until"] = filters.until
    return values


def _counted(filters: AuditFilter) -> bool:
    """Whether hourly counts may match: not when the filters ask for another action, say."""
    return all(getattr(filters, name) in (None, value) for name, value in _COUNTED.items())


def _events(conditions: list[ColumnElement[bool]]) -> Select[Any]:
    c = EVENTS.c
    return select(
        *(c[name] for name in _COLUMNS),
        literal_column("1", BigInteger).label("count"),
        literal_column("0", Integer).label("hourly"),
    ).where(*conditions)


_COLUMNS = (
    "id",
    "occurred_at",
    "actor",
    "actor_kind",
    "client_ip",
    "action",
    "resource_type",
    "resource_name",
    "result",
    "detail",
)


def _count_columns() -> dict[str, Any]:
    """The hourly counts' columns under the event columns' names; None for the constants (_COUNTED)."""
    c = COUNTS.c
    return {
        "id": c.id,
        "occurred_at": c.hour,
        "actor": c.actor,
        "actor_kind": c.actor_kind,
        "client_ip": c.client_ip,
        **dict.fromkeys(_COUNTED),
        "resource_name": c.resource_name,
        "detail": None,
    }


def _counts(conditions: list[ColumnElement[bool]]) -> Select[Any]:
    columns = _count_columns()
    # Enum values: plain words, safe as SQL text.
    columns.update({name: literal_column(f"'{value}'", String) for name, value in _COUNTED.items()})
    columns["detail"] = sql_cast(null(), JSON)
    return select(
        *(columns[name].label(name) for name in _COLUMNS),
        COUNTS.c.pulls.label("count"),
        literal_column("1", Integer).label("hourly"),
    ).where(*conditions)


def _event_conditions(given: frozenset[str]) -> list[ColumnElement[bool]]:
    c = EVENTS.c
    conditions = _shared_conditions(given, c)
    for name in ("action", "resource_type", "result"):
        if name in given:
            conditions.append(c[name] == bindparam(name))
    if "since" in given:
        conditions.append(c.occurred_at >= bindparam("since"))
    if "until" in given:
        conditions.append(c.occurred_at < bindparam("until"))
    return conditions


def _count_conditions(given: frozenset[str]) -> list[ColumnElement[bool]]:
    """The counts' conditions, where they may match (`_counted`): their action, type and result are
    the constants a filter on them asked for."""
    c = COUNTS.c
    conditions = _shared_conditions(given, c)
    # An hour matches when it overlaps [since, until).
    if "since" in given:
        conditions.append(c.hour > bindparam("since_hour"))
    if "until" in given:
        conditions.append(c.hour < bindparam("until"))
    return conditions


def _shared_conditions(given: frozenset[str], c: Any) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name in ("actor", "actor_kind", "client_ip"):
        if name in given:
            conditions.append(c[name] == bindparam(name))
    if "resource_name" in given:
        length = bindparam("resource_name_length", type_=Integer)
        conditions.append(func.substr(c.resource_name, 1, length) == bindparam("resource_name"))
    return conditions


def _event(row: RowMapping) -> AuditEvent:
    hourly = bool(row["hourly"])
    return AuditEvent(
        id=None if hourly else row["id"],  # ids of the two tables overlap; a count is no single event
        occurred_at=row["occurred_at"],
        actor=row["actor"],
        actor_kind=row["actor_kind"],
        client_ip=row["client_ip"],
        action=row["action"],
        resource_type=row["resource_type"],
        resource_name=row["resource_name"],
        result=row["result"],
        detail=row["detail"],
        count=row["count"],
        hourly=hourly,
    )
