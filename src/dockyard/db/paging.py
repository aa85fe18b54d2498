"""One page of a listing: the bounds every service's listing takes, and the query that reads a sorted page
with its total. The management API asks for at most 100 per page (api/management/listing.py); services
allow MAX_PAGE_SIZE for the CLI and jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, func, select

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
) -> tuple[list[Any], int]:
    """The rows of one page of `query` and the total number of rows it matches."""
    if sort not in sortable:
        raise PaginationInvalid(f"cannot sort by {sort!r}", detail={"sortable": sorted(sortable)})
    check_window(offset, limit)
    total = connection.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    column = sortable[sort]
    order = [column.desc() if descending else column.asc(), tiebreak]
    rows = connection.execute(query.order_by(*order).offset(offset).limit(limit)).all()
    return list(rows), int(total)


def substring(column: Any, text: str) -> Any:
    """A case-insensitive "contains" filter; % and _ in `text` match themselves."""
    return func.lower(column).contains(text.lower(), autoescape=True)
