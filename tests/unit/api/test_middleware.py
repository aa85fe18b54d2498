from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from dockyard.api.middleware import REQUEST_ID_KEY, ObservabilityMiddleware, new_request_id
from dockyard.observability.logging import get_logger
from dockyard.observability.metrics import FLUSH_SECONDS, Metrics
from tests.support.server import REPO_ROOT, free_port
from tests.support.timeouts import HTTP_TIMEOUT
from tests.unit.observability.capture import captured_logs


async def blob(request: Request) -> Response:
    get_logger("dockyard.test").info("serving blob")  # tagged with the request id by the middleware
    return Response(b"x" * 1000, media_type="application/octet-stream")


async def start_upload(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"{len(body)} {request.scope[REQUEST_ID_KEY]}", status_code=202)


async def fail(request: Request) -> Response:
    raise RuntimeError("boom")


async def self_routed(scope: Scope, receive: Receive, send: Send) -> None:
    scope["dockyard.route"] = "/custom/{thing}"
    await PlainTextResponse("custom")(scope, receive, send)


async def static_files(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("static")(scope, receive, send)


def build_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v2/", lambda request: PlainTextResponse("{}")),
            Route("/v2/{name:path}/blobs/{digest}", blob, methods=["GET", "HEAD"]),
            Route("/v2/{name:path}/blobs/uploads/", start_upload, methods=["POST"]),
            Route("/fail", fail),
            Mount("/api/v1", routes=[Route("/projects/{project}", lambda request: PlainTextResponse("p"))]),
            Mount("/static", app=static_files),
            Mount("/custom", app=self_routed),
        ]
    )


def requests(app: Any, calls: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("10.1.2.3", 4567))
        async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as client:
            return [await client.request(method, url, **kwargs) for method, url, kwargs in calls]

    return asyncio.run(run())


def server_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] != "httpx"]  # the test client logs too


def metric_values(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render()[0].decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def count(values: dict[Any, float], route: str, method: str, status: str) -> float | None:
    labels = frozenset({"route": route, "method": method, "status": status}.items())
    return values.get(("http_requests_total", labels))


def test_metrics_use_route_templates_never_raw_paths() -> None:
    metrics = Metrics()
    app = ObservabilityMiddleware(build_app(), metrics, access_log=False)
    requests(
        app,
        [
            ("GET", "/v2/", {}),
            ("GET", "/v2/library/alpine/blobs/sha256:aaaa", {}),
            ("GET", "/v2/team/app/blobs/sha256:bbbb", {}),
            ("HEAD", "/v2/team/app/blobs/sha256:bbbb", {}),
            ("POST", "/v2/team/app/blobs/uploads/", {"content": b"y" * 300}),
            ("DELETE", "/v2/team/app/blobs/sha256:bbbb", {}),  # 405 from a partial match
            ("GET", "/no/such/path/1", {}),
            ("GET", "/no/such/path/2", {}),
            ("BREW", "/v2/", {}),
            ("GET", "/api/v1/projects/alpha", {}),
            ("GET", "/static/css/site.css", {}),
            ("GET", "/custom/anything", {}),
            ("GET", "/fail", {}),
        ],
    )
    values = metric_values(metrics)
    blobs = "/v2/{name:path}/blobs/{digest}"
    assert count(values, "/v2/", "GET", "200") == 1
    assert count(values, blobs, "GET", "200") == 2
    assert count(values, blobs, "HEAD", "200") == 1
    assert count(values, blobs, "DELETE", "405") == 1
    assert count(values, "/v2/{name:path}/blobs/uploads/", "POST", "202") == 1
    assert count(values, "unmatched", "GET", "404") == 2
    assert count(values, "/v2/", "OTHER", "405") == 1
    assert count(values, "/api/v1/projects/{project}", "GET", "200") == 1
    assert count(values, "/static/{path}", "GET", "200") == 1
    assert count(values, "/custom/{thing}", "GET", "200") == 1
    assert count(values, "/fail", "GET", "500") == 1
    # body bytes: 2 GETs of 1000 bytes, the 405's text; HEAD sends none
    sent = values[("http_response_bytes_total", frozenset({"route": blobs}.items()))]
    assert sent == 2 * 1000 + len("Method Not Allowed")
    upload_route = frozenset({"route": "/v2/{name:path}/blobs/uploads/"}.items())
    assert values[("http_request_bytes_total", upload_route)] == 300
    routes = {dict(labels)["route"] for name, labels in values if name == "http_requests_total"}
    assert not any("alpine" in route or "sha256" in route for route in routes)


def test_request_ids_are_made_or_kept_when_sane() -> None:
    app = ObservabilityMiddleware(build_app(), Metrics(), access_log=False)
    made, kept, too_long, odd = requests(
        app,
        [
            ("POST", "/v2/a/blobs/uploads/", {}),
            ("POST", "/v2/a/blobs/uploads/", {"headers": {"X-Request-Id": "lb-7f3a.01"}}),
            ("GET", "/v2/", {"headers": {"X-Request-Id": "a" * 200}}),
            ("GET", "/v2/", {"headers": {"X-Request-Id": 'has spaces; and="quotes"'}}),
        ],
    )
    generated = made.headers["x-request-id"]
    assert len(generated) == 16
    assert made.text == f"0 {generated}"  # handlers see the same id in the scope
    assert kept.headers["x-request-id"] == "lb-7f3a.01"
    assert kept.text == "0 lb-7f3a.01"
    assert too_long.headers["x-request-id"] != "a" * 200
    assert odd.headers["x-request-id"] != 'has spaces; and="quotes"'
    assert len({generated, too_long.headers["x-request-id"], odd.headers["x-request-id"]}) == 3


def test_request_ids_stay_unique_past_a_batch_and_across_a_fork() -> None:
    """Ids come from os.urandom a batch at a time: a forked worker must not hand out the ids its parent
    hands out next (the same bytes left over in both)."""
    ids = [new_request_id() for _ in range(1500)]  # three batches
    assert len(set(ids)) == 1500
    assert all(len(made) == 16 and int(made, 16) >= 0 for made in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then gone
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 16
    assert child != new_request_id()


def test_one_access_log_line_per_request_with_its_request_id() -> None:
    with captured_logs("info", "json") as logs:
        app = ObservabilityMiddleware(build_app(), Metrics(), access_log=True)
        (response,) = requests(app, [("GET", "/v2/library/alpine/blobs/sha256:aaaa?token=secret-ish", {})])
    handler_line, access_line = server_lines(logs.json_lines())
    request_id = response.headers["x-request-id"]
    assert handler_line["event"] == "serving blob"
    assert handler_line["request_id"] == request_id
    assert access_line["logger"] == "dockyard.access"
    assert access_line["method"] == "GET"
    assert access_line["route"] == "/v2/{name:path}/blobs/{digest}"
    assert access_line["path"] == "/v2/library/alpine/blobs/sha256:aaaa"
    assert access_line["status"] == 200
    assert access_line["response_bytes"] == 1000
    assert access_line["request_id"] == request_id
    assert access_line["client"] == "10.1.2.3:4567"
    assert access_line["duration_ms"] >= 0
    assert "secret-ish" not in str(access_line)


def test_access_log_can_be_disabled_and_metrics_left_out() -> None:
    with captured_logs("info", "json") as logs:
        app = ObservabilityMiddleware(build_app(), None, access_log=False)
        (response,) = requests(app, [("GET", "/v2/", {})])
    assert response.status_code == 200
    assert "x-request-id" in response.headers
    assert server_lines(logs.json_lines()) == []


def test_works_as_starlette_middleware_too() -> None:
    metrics = Metrics()
    app = build_app()
    app = Starlette(
        routes=app.routes, middleware=[Middleware(ObservabilityMiddleware, metrics=metrics, access_log=False)]
    )
    (response,) = requests(app, [("GET", "/v2/x/blobs/sha256:cc", {})])
    assert response.status_code == 200
    assert count(metric_values(metrics), "/v2/{name:path}/blobs/{digest}", "GET", "200") == 1


# A real Granian with two worker processes: files go out through the server's pathsend path, and /metrics
# adds up both workers' counts.
GRANIAN_APP = """
import os
from pathlib import Path
from starlette.applications import Starlette
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from dockyard.api.middleware import ObservabilityMiddleware
from dockyard.observability.metrics import Metrics

metrics = Metrics()
BLOB = Path(os.environ["TEST_BLOB"])

async def get_blob(request):
    return FileResponse(BLOB, headers={"X-Worker": str(os.getpid())})

async def get_metrics(request):
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)

app = ObservabilityMiddleware(
    Starlette(routes=[Route("/v2/{name:path}/blobs/{digest}", get_blob), Route("/metrics", get_metrics)]),
    metrics, access_log=False,
)
"""


def test_under_granian_workers_file_bytes_and_counts_add_up(tmp_path: Path) -> None:
    (tmp_path / "granian_test_app.py").write_text(GRANIAN_APP)
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(65536))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "TEST_BLOB": str(blob),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}",
    }
    granian = str(Path(sys.executable).with_name("granian"))
    process = subprocess.Popen(
        [
            granian,
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "granian_test_app:app",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/metrics", timeout=1)
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, "granian did not start"
                time.sleep(0.1)
        for _ in range(20):
            with httpx.Client(
                timeout=HTTP_TIMEOUT
            ) as client:  # a new connection each time, so both workers answer
                response = client.get(f"{url}/v2/library/alpine/blobs/sha256:abc")
            assert response.content == blob.read_bytes()
        time.sleep(FLUSH_SECONDS + 0.5)  # each worker hands its batched observations over on a timer
        text = httpx.get(f"{url}/metrics", timeout=HTTP_TIMEOUT).text
    finally:
        process.terminate()
        process.wait(timeout=15)
    values = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    route = "/v2/{name:path}/blobs/{digest}"
    assert count(values, route, "GET", "200") == 20
    assert values[("http_response_bytes_total", frozenset({"route": route}.items()))] == 20 * 65536
