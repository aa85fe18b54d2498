"""Paging, sorting and filtering, the same on every list endpoint.

- Paging: `page` (1..1,000,000,000) and `page_size` (1..100, default 20). The response is a JSON array; the
  `X-Total-Count` header gives the number of matching items across all pages, and a `Link` header
  (RFC 8288) points at the `first`, `prev`, `next` and `last` pages, keeping every other parameter.
- Sorting: `sort=name` ascending, `sort=-created_at` descending. Each list names the keys it allows;
  another key is a 400.
- Filtering: plain query parameters. `q` is a case-insensitive substring match on the list's main
  text (a repository's or project's name, a username, a tag); lists document further exact-match
  parameters of their own (`public=true`, `action=delete`, ...).
"""

# No `from __future__ import annotations` here: FastAPI must see the Query(...) metadata of the
# dependency below, which closes over local values, as objects rather than strings.

from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request, Response

from dockyard.api.management.errors import ApiError

MAX_PAGE_SIZE = 100
# Far past any real list, and small enough that the row offset (page - 1) * page_size fits the
# databases' 64-bit OFFSET: page=9223372036854775807 was a 500 (an integer overflow in the driver).
MAX_PAGE = 1_000_000_000
DEFAULT_PAGE_SIZE = 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ListParams:
    page: int
    page_size: int
    sort_key: str
    descending: bool
    q: str | None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    @property
    def limit(self) -> int:
        return self.page_size


def list_params(
    sort_keys: Sequence[str], default_sort: str
) -> Callable[..., Coroutine[Any, Any, ListParams]]:
    """A FastAPI dependency reading page, page_size, sort and q, checked against `sort_keys`."""
    allowed = ", ".join(f"{key}, -{key}" for key in sort_keys)

    async def dependency(  # async: on the event loop, not handed to a worker thread
        page: Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page number, from 1 to {MAX_PAGE}.")] = 1,
        page_size: Annotated[
            int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Items per page, at most {MAX_PAGE_SIZE}.")
        ] = DEFAULT_PAGE_SIZE,
        sort: Annotated[
            str, Query(description=f"Sort key; a leading '-' sorts descending. One of: {allowed}.")
        ] = default_sort,
        q: Annotated[
            str | None,
            Query(max_length=255, description="Case-insensitive substring of the list's main text."),
        ] = None,
    ) -> ListParams:
        descending = sort.startswith("-")
        key = sort.removeprefix("-")
        if key not in sort_keys:
            raise ApiError(400, f"sort: unknown key {key!r}; allowed: {allowed}")
        return ListParams(page, page_size, key, descending, q or None)

    return dependency


def set_page_headers(request: Request, response: Response, params: ListParams, total: int) -> None:
    response.headers["X-Total-Count"] = str(total)
    last = max(1, -(-total // params.page_size))
    links = [_link(request, 1, "first")]
    if params.page > 1:
        links.append(_link(request, min(params.page - 1, last), "prev"))
    if params.page < last:
        links.append(_link(request, params.page + 1, "next"))
    links.append(_link(request, last, "last"))
    response.headers["Link"] = ", ".join(links)


def _link(request: Request, page: int, rel: str) -> str:
    url = request.url.include_query_params(page=page)
    return f'<{url.path}?{url.query}>; rel="{rel}"'


def page_in_memory(
    items: Iterable[T],
    params: ListParams,
    sort_fields: Mapping[str, Callable[[T], Any]],
    text: Callable[[T], str] | None = None,
) -> tuple[list[T], int]:
    """Filter by `q` on `text`, sort and cut a page out of a list already in memory (for lists that are
    small by nature: users, projects, members, robots). Returns the page and the total."""
    selected = list(items)
    if params.q and text is not None:
        needle = params.q.casefold()
        selected = [item for item in selected if needle in text(item).casefold()]
    key = sort_fields[params.sort_key]
    # None sorts first ascending (last descending), instead of failing to compare.
    selected.sort(key=lambda item: (key(item) is not None, key(item)), reverse=params.descending)
    return selected[params.offset : params.offset + params.limit], len(selected)
