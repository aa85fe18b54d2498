"""In-memory paging and the Link/X-Total-Count headers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.management.listing import ListParams, page_in_memory, set_page_headers


def params(
    page: int = 1, size: int = 2, sort: str = "name", descending: bool = False, q: str | None = None
) -> ListParams:
    return ListParams(page, size, sort, descending, q)


ITEMS = [{"name": "b", "n": 2}, {"name": "a", "n": None}, {"name": "Cb", "n": 1}]
SORTS = {"name": lambda item: item["name"].lower(), "n": lambda item: item["n"]}


def test_filters_sorts_and_cuts_pages() -> None:
    page, total = page_in_memory(ITEMS, params(), SORTS, text=lambda item: item["name"])
    assert [item["name"] for item in page] == ["a", "b"] and total == 3
    page, total = page_in_memory(ITEMS, params(page=2), SORTS)
    assert [item["name"] for item in page] == ["Cb"] and total == 3
    page, total = page_in_memory(ITEMS, params(q="B"), SORTS, text=lambda item: item["name"])
    assert [item["name"] for item in page] == ["b", "Cb"] and total == 2


def test_missing_values_sort_first_ascending_and_last_descending() -> None:
    ascending, _ = page_in_memory(ITEMS, params(size=3, sort="n"), SORTS)
    assert [item["n"] for item in ascending] == [None, 1, 2]
    descending, _ = page_in_memory(ITEMS, params(size=3, sort="n", descending=True), SORTS)
    assert [item["n"] for item in descending] == [2, 1, None]


def headers_for(page: int, total: int, query: bytes = b"page_size=2") -> dict[str, str]:
    scope = {"type": "http", "method": "GET", "path": "/api/v1/users", "query_string": query, "headers": []}
    response = Response()
    set_page_headers(Request(scope), response, params(page=page), total)
    return dict(response.headers)


def test_link_header_names_first_prev_next_last() -> None:
    middle = headers_for(2, 5)
    assert middle["x-total-count"] == "5"
    assert middle["link"] == (
        '</api/v1/users?page_size=2&page=1>; rel="first", </api/v1/users?page_size=2&page=1>; rel="prev", '
        '</api/v1/users?page_size=2&page=3>; rel="next", </api/v1/users?page_size=2&page=3>; rel="last"'
    )
    empty = headers_for(1, 0)
    assert 'rel="next"' not in empty["link"] and 'rel="prev"' not in empty["link"]
    assert empty["x-total-count"] == "0"
