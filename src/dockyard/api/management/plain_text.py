"""No NUL characters in what the management API is given.

PostgreSQL's text columns cannot hold a NUL (psycopg refuses the parameter, which would be a 500) while
SQLite stores it: either way a name or filter with a NUL in it is a mistake or a probe. It is refused at the
edge, a 400 naming where it was, for query and path parameters and for strings anywhere in a JSON body.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from dockyard.api.management.errors import ApiError

NUL = "\x00"


async def refuse_nul_characters(request: Request) -> None:
    given = (("query", request.query_params.multi_items()), ("path", list(request.path_params.items())))
    for where, values in given:
        for name, value in values:
            if isinstance(value, str) and NUL in value:
                raise ApiError(400, f"{where}.{name}: NUL characters are not allowed")
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.body()
        if b"\\u0000" in body and _holds_nul(_parsed(body)):
            raise ApiError(400, "body: NUL characters are not allowed")


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None  # FastAPI's own validation answers a body that is not JSON


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False
