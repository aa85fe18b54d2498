"""One page of a listing: the bounds every service's listing takes, and the query that reads a sorted page
with its total. The management API asks for at most 100 per page (api/management/listing.py); services
allow MAX_PAGE_SIZE for the CLI and jobs."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, Connection, bindparam, func, select

from dockyard.errors import PaginationInvalid

MAX_PAGE_SIZE = 1000


def check_window(offset: int, limit: int) -> None:
    """PaginationInvalid unless offset >= 0 and 0 < limit <= MAX_PAGE_SIZE."""
    if offset < 0 or not 0 < limit <= MAX_PAGE_SIZE:
        raise PaginationInvalid(
            f"offset must be >= 0 and limit between 1 and {MAX_PAGE_SIZE}",
            detail={"offset": offset, "limit": limit},
        )


def page_rows(
    connection: Connection,
    query: Any,
    *,
    sortable: Mapping[str, Any],
    sort: str,
    descending: bool,
    offset: int,
    limit: int,
    tiebreak: Any,
    values: Mapping[str, Any] | None = None,
) -> tuple[list[Any], int]:
    """The rows of one page of `query` and the total number of rows it matches.

    With `values`, `query` is a statement built once (a module constant, its `sortable` and `tiebreak`
    too) and `values` its bind parameters: the count and page statements are then built once as well,
    instead of on each call (building a statement and its cache key costs more CPU than running it)."""
    if sort not in sortable:
        raise PaginationInvalid(f"cannot sort by {sort!r}", detail={"sortable": sorted(sortable)})
    check_window(offset, limit)
    if values is None:
        total = connection.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        column = sortable[sort]
        order = [column.desc() if descending else column.asc(), tiebreak]
        rows = connection.execute(query.order_by(*order).offset(offset).limit(limit)).all()
        return list(rows), int(total)
    counting, paging = _statements(query, sortable[sort], descending, tiebreak)
    total = connection.execute(counting, values).scalar_one()
    rows = connection.execute(paging, {**values, "page_offset": offset, "page_limit": limit}).all()
    return list(rows), int(total)


# (the query's id, the sort column's id, descending): (the query, its count, its page). The query is
# kept so that its id stays its own; constants only, so this stays as small as the code.
_PREPARED: dict[tuple[int, int, bool], tuple[Any, Any, Any]] = {}
_PREPARED_LOCK = threading.Lock()


def _statements(query: Any, column: Any, descending: bool, tiebreak: Any) -> tuple[Any, Any]:
    # BIGINT: the last page allowed starts past a 32-bit integer (PostgreSQL refuses that as INTEGER).
    key = (id(query), id(column), descending)
    found = _PREPARED.get(key)
    if found is None:
        order = [column.desc() if descending else column.asc(), tiebreak]
        paging = (
            query.order_by(*order)
            .offset(bindparam("page_offset", type_=BigInteger))
            .limit(bindparam("page_limit", type_=BigInteger))
        )
        counting = select(func.count()).select_from(query.subquery())
        with _PREPARED_LOCK:
            found = _PREPARED.setdefault(key, (query, counting, paging))
    return found[1], found[2]


def substring(column: Any, text: str) -> Any:
    """A case-insensitive "contains" filter; % and _ in `text` match themselves."""
    return func.lower(column).contains(text.lower(), autoescape=True)
