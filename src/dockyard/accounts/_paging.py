"""Paging and sorting shared by the account and project listings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, func, select

from dockyard.accounts.interfaces import InvalidName

MAX_PAGE_SIZE = 1000


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
        raise InvalidName(f"cannot sort by {sort!r}", detail={"sortable": sorted(sortable)})
    if offset < 0 or not 0 < limit <= MAX_PAGE_SIZE:
        raise InvalidName(f"offset must be >= 0 and limit between 1 and {MAX_PAGE_SIZE}")
    total = connection.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    column = sortable[sort]
    order = [column.desc() if descending else column.asc(), tiebreak]
    rows = connection.execute(query.order_by(*order).offset(offset).limit(limit)).all()
    return list(rows), int(total)


def substring(column: Any, text: str) -> Any:
    """A case-insensitive "contains" filter; % and _ in `text` match themselves."""
    return func.lower(column).contains(text.lower(), autoescape=True)
