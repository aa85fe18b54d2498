"""No HTTP client in the tests waits on httpx's default 5 s: on a loaded CI machine a server's ordinary
answer (an argon2 login, a worker's first request) takes longer, and the test errors with ReadTimeout
for no fault of the server's. Clients pass tests.support.timeouts.HTTP_TIMEOUT, or a timeout of their
own when the test means it (a readiness poll, an answer that must come quickly)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.db_independent  # reads the tests' source

TESTS = Path(__file__).resolve().parents[1]
# httpx's clients and module functions: each takes `timeout` and defaults it to 5 s.
CLIENTS = {"Client", "AsyncClient"}
CALLS = CLIENTS | {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream"}


def _is_httpx(node: ast.expr, name: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "httpx"
        and node.func.attr == name
    )


def _without_timeout(source: str) -> list[int]:
    """Lines of httpx calls left on the default timeout. In-process clients (an ASGITransport, given
    directly or through a name bound to one) make no network call and are left out."""
    tree = ast.parse(source)
    in_process = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _is_httpx(node.value, "ASGITransport")
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    lines = []
    for node in ast.walk(tree):
        if not any(_is_httpx(node, name) for name in CALLS):
            continue
        assert isinstance(node, ast.Call)
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        transport = keywords.get("transport")
        if transport is not None and (
            _is_httpx(transport, "ASGITransport")
            or (isinstance(transport, ast.Name) and transport.id in in_process)
        ):
            continue
        if "timeout" not in keywords:
            lines.append(node.lineno)
    return lines


def test_the_check_sees_a_call_on_the_default_and_passes_the_others() -> None:
    source = """
import httpx
a = httpx.get("http://x/")
b = httpx.Client(base_url="http://x", timeout=HTTP_TIMEOUT)
c = httpx.post("http://x/", json={}, timeout=1)
transport = httpx.ASGITransport(app=app)
d = httpx.AsyncClient(transport=transport)
e = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
"""
    assert _without_timeout(source) == [3, 8]


def test_no_http_client_in_the_tests_is_left_on_httpx_default_timeout() -> None:
    found = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        if "node_modules" not in path.parts and "httpx" in path.read_text()
        for line in _without_timeout(path.read_text())
    ]
    assert found == [], "pass timeout=HTTP_TIMEOUT (tests/support/timeouts.py) to: " + ", ".join(found)
