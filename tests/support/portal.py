"""A browser's view of the web portal (/ui) over HTTP: log in through the form, keep the cookie,
send forms with the page's CSRF token and this server's Origin, as a browser would. Over a real server's
port, or (`http`: a TestClient of tests/support/inprocess.py) in the test's process."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.support.timeouts import HTTP_TIMEOUT

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class PortalBrowser:
    def __init__(self, base_url: str, http: httpx.Client | None = None) -> None:
        self.base_url = base_url
        self.http = http or httpx.Client(base_url=base_url, follow_redirects=False, timeout=HTTP_TIMEOUT)
        self.http.follow_redirects = False

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PortalBrowser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def login(self, username: str, password: str) -> httpx.Response:
        return self.http.post(
            "/ui/login",
            data={"username": username, "password": password},
            headers={"Origin": self.base_url},
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def csrf_token(self) -> str:
        """The session's CSRF token, as the projects page's logout form carries it."""
        page = self.http.get("/ui/projects")
        assert page.status_code == 200, page.status_code
        found = CSRF.search(page.text)
        assert found, "no CSRF token on the page"
        return found.group(1)

    def submit(
        self,
        path: str,
        data: dict[str, Any] | None = None,
        *,
        csrf: str | None = "page",
        origin: str | None = "self",
    ) -> httpx.Response:
        """POST a form: with the page's CSRF token (or `csrf`, None for none) and this server's Origin
        (or `origin`, None for none)."""
        fields = dict(data or {})
        if csrf == "page":
            csrf = self.csrf_token()
        if csrf is not None:
            fields["csrf_token"] = csrf
        headers = {}
        if origin is not None:
            headers["Origin"] = self.base_url if origin == "self" else origin
        return self.http.post(path, data=fields, headers=headers)


def signed_out(answer: httpx.Response) -> bool:
    """The portal sent the browser to its login page."""
    return answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")
