"""The two shapes of a portal page handler, written once:

- a list page: read the project (when the page is a project's: a project one may not see is that
  refusal, before anything else is asked), read one page of an API list, render (`read_page`,
  `project_and_page`);
- a form: check it (signed in, same origin, CSRF: `Portal.checked`), make the API call as the user,
  then redirect, or show the form's page again with the API's message (`submit`).

The API decides every refusal: 401 sends the browser to log in, 403 and 404 are the page's answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

if TYPE_CHECKING:
    from dockyard.ui.interfaces import ApiAnswer, Caller
    from dockyard.ui.pages import Portal

MAX_PAGE = 1_000_000
Again = Callable[..., Awaitable[Response]]  # the form's page once more: (request, error=..., status=...)
Done = Callable[["ApiAnswer"], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Paged:
    """One page of an API list: its items, the total over all pages, which page, how many a page."""

    items: list[Any]
    total: int
    page: int
    size: int
    error: str | None = None  # a filter the API refused (400, 422), for the page to say
    status: int = 200  # the page's status: the refusal's when there is an error

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


def page_number(request: Request) -> int:
    """The page asked for (`?page=`), 1 for anything that is not a number."""
    try:
        return max(1, min(int(request.query_params.get("page", "1")), MAX_PAGE))
    except ValueError:
        return 1


async def read_page(
    portal: Portal,
    caller: Caller,
    request: Request,
    path: str,
    size: int,
    filters: dict[str, str] | None = None,
    *,
    tolerant: bool = False,
) -> Paged:
    """The page `?page=` of the list at `path` with the filters that are set. A refusal is the
    page's; with `tolerant`, an invalid filter (400, 422) gives an empty page with the API's message."""
    page = page_number(request)
    params = {"page": str(page), "page_size": str(size), **{k: v for k, v in (filters or {}).items() if v}}
    if not tolerant:
        answer = await portal.read(caller, path, params)
        return Paged(answer.json(), answer.total, page, size)
    answer = await portal.api.call(caller, "GET", path, params=params)
    if answer.status in (401, 403, 404):
        portal.refused(answer)
    if not answer.ok:
        return Paged([], 0, page, size, answer.message, answer.status)
    return Paged(answer.json(), answer.total, page, size)


async def project_and_page(
    portal: Portal, request: Request, what: str, size: int = 100
) -> tuple[Caller, dict[str, Any], Paged]:
    """The signed-in caller, the project of the path and a page of its list `what` (`members`)."""
    caller, _ = portal.signed_in(request)
    project = request.path_params["project"]
    # The project first: a project one may not see is that refusal, before anything else is asked.
    info = (await portal.read(caller, f"/projects/{project}")).json()
    return caller, info, await read_page(portal, caller, request, f"/projects/{project}/{what}", size)


async def submit(
    portal: Portal,
    request: Request,
    caller: Caller,
    method: str,
    path: str,
    body: Any = None,
    *,
    done: str | Done,
    again: Again | None,
    mistakes: frozenset[int] = frozenset(),
) -> Response:
    """Make a form's API call. Success: a 303 to `done` (or `done(answer)`, a page: a secret shown
    once). A refusal (401, 403, 404) is the page's answer; any other failure shows the form's page
    `again` with the API's message and status, or, without `again`, is the page's answer too.
    `mistakes`: refusals that are the form's (a 404 for a username typed in it), shown `again`."""
    answer = await portal.api.call(caller, method, path, body=body)
    refusal = answer.status in (401, 403, 404) and answer.status not in mistakes
    if not answer.ok and (again is None or refusal):
        portal.refused(answer)
    if not answer.ok:
        assert again is not None
        return await again(request, error=answer.message, status=answer.status)
    if isinstance(done, str):
        return RedirectResponse(done, 303)
    return await done(answer)


def form_text(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def expiry(value: str) -> str | None:
    """A date field's value as the API's timestamp: the end of that day, UTC; empty: never."""
    if not value:
        return None
    day = datetime.strptime(value, "%Y-%m-%d").date()
    return datetime.combine(day, time(23, 59, 59), UTC).isoformat()
