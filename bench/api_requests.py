"""`python -m bench.api_requests`: in-process CPU per management API request, beside `/v2/`'s.

The app as a worker builds it (`build_services` + `create_app`, auth on, SQLite or `--database-url`),
driven through ASGI on one event loop without sockets or an HTTP client, as the admin with Basic
credentials (remembered after the first request, as a client's would be), or with `--session` in a
session opened by `POST /api/v1/login` (its cookie, as a browser sends it). One project `p1` exists.
CPU is `time.process_time()` of the whole process per request; `--profile FILE` writes cProfile
stats of the first path's requests, with anyio's worker-thread hand-offs run inline so the profile
sees them (`python -m pstats FILE`).

    python -m bench.api_requests [--requests 300] [--database-url URL] [--profile FILE]
                                 [--log-level info] [--session] [PATH ...]

A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.asgi import Lifespan, request

DEFAULT_PATHS = (
    "/v2/",
    "/api/v1/jobs/kinds",
    "/api/v1/projects",
    "/api/v1/projects/p1",
    "/api/v1/projects/p1/members",
    "/api/v1/jobs",
    "/api/v1/audit",
)


async def call(app: Any, authorization: bytes, method: str, path: str, body: bytes = b"") -> int:
    """`authorization`: a Basic Authorization header's value, or `cookie: ...` (a session's)."""
    name, _, value = authorization.partition(b": ")
    headers = [(b"cookie", value) if name == b"cookie" else (b"authorization", authorization)]
    if body:
        headers.append((b"content-type", b"application/json"))
    return await request(app, method, path, headers, body=body)


async def session_cookie(app: Any, password: str) -> bytes:
    """`cookie: <the session cookie>` of the admin's login (POST /api/v1/login)."""
    cookies: list[bytes] = []

    async def receive() -> dict[str, Any]:
        body = json.dumps({"username": "admin", "password": password}).encode()
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            cookies.extend(v.split(b";")[0] for k, v in message["headers"] if k.lower() == b"set-cookie")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/login",
        "raw_path": b"/api/v1/login",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"registry.bench"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
        "state": {},
    }
    await app(scope, receive, send)
    assert cookies, "the login set no cookie"
    return b"cookie: " + cookies[0]


async def run(options: argparse.Namespace, workdir: Path) -> None:
    from dockyard.app import build_services, create_app
    from dockyard.bootstrap import first_admin
    from dockyard.config.settings import Settings
    from dockyard.observability.logging import configure_logging

    password = "bench-admin-password-7Qk2"
    config: dict[str, Any] = {"datadir": str(workdir / "data"), "jobs": {"run_in_serve": False}}
    config["log"] = {"level": options.log_level}
    if options.database_url:
        config["database"] = {"url": options.database_url}
    settings = Settings.model_validate(config)
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)  # as a worker
    services = build_services(settings)
    first_admin(settings, services.db, password)
    app = create_app(services)
    authorization = b"Basic " + base64.b64encode(f"admin:{password}".encode())
    life = Lifespan(app)
    await life.startup()
    created = await call(app, authorization, "POST", "/api/v1/projects", json.dumps({"name": "p1"}).encode())
    assert created == 201, created
    if options.session:
        authorization = await session_cookie(app, password)
    for path in options.paths:
        for _ in range(50):  # warm: routers included, statements compiled, the login remembered
            status = await call(app, authorization, "GET", path)
            assert status == 200, (path, status)
        cpu = time.process_time()
        for _ in range(options.requests):
            await call(app, authorization, "GET", path)
        per_request = (time.process_time() - cpu) / options.requests * 1e6
        print(f"GET {path}: {per_request:,.0f} µs of CPU per request")
    if options.profile:
        import anyio.to_thread

        async def inline(fn: Any, *args: Any, **_: Any) -> Any:
            return fn(*args)

        anyio.to_thread.run_sync = inline  # type: ignore[assignment]
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(options.requests):
            await call(app, authorization, "GET", options.paths[0])
        profiler.disable()
        profiler.dump_stats(options.profile)
    await life.shutdown()
    services.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_requests", description=__doc__)
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS), help="GET these (default: a set)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--database-url")
    parser.add_argument("--profile", help="write cProfile stats of the first path's requests to this file")
    parser.add_argument("--log-level", default="info", help="log.level (info: an access-log line a request)")
    parser.add_argument("--session", action="store_true", help="in a session (POST /api/v1/login), not Basic")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as scratch:
        asyncio.run(run(options, Path(scratch)))


if __name__ == "__main__":
    main()
