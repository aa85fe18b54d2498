"""A list page's query (search, sort, page), passed on to the API as its list parameters, and whether a
request is htmx's (which then gets the list's table alone)."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

PAGE_SIZES = (25, 50, 100)


def htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class Listing:
    """A list page's query: search, sort and page, passed on to the API as its list parameters."""

    def __init__(self, q: str, sort: str, page: int, page_size: int) -> None:
        self.q, self.sort, self.page, self.page_size = q, sort, page, page_size

    @classmethod
    def of(cls, request: Request, sorts: tuple[str, ...], default: str) -> Listing:
        query = request.query_params
        sort = query.get("sort", default)
        page_size = _int(query.get("page_size"), PAGE_SIZES[1])
        return cls(
            query.get("q", "")[:255],
            sort if sort in sorts else default,
            max(1, min(_int(query.get("page"), 1), 1_000_000)),
            page_size if page_size in PAGE_SIZES else PAGE_SIZES[1],
        )

    def params(self) -> dict[str, str]:
        params = {"page": str(self.page), "page_size": str(self.page_size), "sort": self.sort}
        if self.q:
            params["q"] = self.q
        return params

    def pages(self, total: int) -> int:
        return max(1, math.ceil(total / self.page_size))

    def link(self, **changes: Any) -> str:
        """This list's query string with some parameters changed (a new sort starts at page 1)."""
        params = {"q": self.q, "sort": self.sort, "page": self.page, "page_size": self.page_size, **changes}
        return "?" + urlencode({k: v for k, v in params.items() if v not in ("", None)})
