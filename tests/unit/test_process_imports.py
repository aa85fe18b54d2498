"""Each process of `dockyard serve` loads only what it runs: a module loaded is memory held for good,
in every process that loaded it (docs/benchmarks.md, "Memory").

For the embedded default (SQLite, filesystem, auth on), each test runs in a fresh interpreter what one
process of `serve` runs, then lists `sys.modules`:

- serve's main process, up to where Granian forks the HTTP workers from it (so everything it holds
  is in each worker too: it loads the app they run, once for all of them, and nothing they do not run):
  `dockyard serve --config PATH` as the `dockyard` command runs it (`cli.entry`), with Granian's `serve`
  replaced;
- an HTTP worker: `worker_app()` as Granian calls it in a child of serve, then requests on the hot
  paths (/v2, a manifest, the health checks);
- the job runner serve starts again when one dies (`main_in_serve`: a fresh interpreter; the first is
  forked from serve's main process, and holds what it holds), until its runner has started and it is
  stopped.

The lists name what none of them needs there: optional backends' clients (S3, Redis, PostgreSQL,
LDAP), migrations, the CLI's output, and per process what belongs to the others. No memory figure is
asserted: that is a benchmark, not a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.accounts.passwords import hash_share
from dockyard.config.loader import hand_down, load_settings

# Never wanted in a server process on the embedded default.
UNCONFIGURED = (
    "boto3",  # storage.s3
    "botocore",
    "redis",  # redis.url
    "psycopg",  # database.url: postgresql://
    "ldap3",  # auth.ldap
    "pyasn1",
    "alembic",  # serve migrates, in a child that exits
    "mako",
    "zxcvbn",  # only where a password is set
    "rich",  # the CLI's tables and progress bars (structlog would load it for tracebacks we never use)
    "pygments",
)
HTTP_WORKER_FORBIDDEN = (
    *UNCONFIGURED,
    "fastapi",  # the management API is built on its first request
    "jinja2",  # so is the web portal, on the first request under /ui
    "dockyard.ui.pages",
    "dockyard.gc",  # job handlers: only the job runner builds them (services.JOB_KINDS)
    "dockyard.retention.tasks",
    "dockyard.scanning",  # inventories run in the CLI (and later in jobs), never in an HTTP worker
    # The pull gate's signature verifiers: loaded on the first pull a signature policy judges (none
    # here), not before the fork, where they cost each start ~20-45 ms of CPU (issue 18).
    "dockyard.signatures.services",
    # Scan on push's and replication's event trigger's services and models: built on a worker's first
    # push (and the pull gate's scan summaries on the first pull a vulnerability policy judges), not
    # before the fork, where they cost each start ~40 ms of CPU (issue 18).
    "dockyard.scans.services",
    "dockyard.scans.models",
    "dockyard.replication.services",
    "dockyard.replication.models",
    "packageurl",
    "cyclonedx",  # SBOM writers: only `dockyard sbom` loads them
    "spdx_tools",
    "dockyard.jobs.runner",
    "dockyard.api.management.app",
    "dockyard.api.management.routers",
    "sqlalchemy.dialects.postgresql",  # with every PostgreSQL driver's dialect
    "typer",
    "httpx",
)
# What the workers Granian forks from it do not run either (it loads their app for them), nor the CLI:
# `dockyard serve` starts the server without it (cli.entry). Alembic stays in the start-up child.
MAIN_PROCESS_FORBIDDEN = (
    *HTTP_WORKER_FORBIDDEN,
    "click",
    "dockyard.cli.main",
)
JOB_RUNNER_FORBIDDEN = (
    *UNCONFIGURED,
    # The pull gate's signature verifiers (cryptography's X.509, SSH and sigstore parsers, ~10 MiB):
    # loaded on the first pull judged, which the job runner never does (its verify jobs load them).
    "dockyard.signatures.services",
    "cryptography",
    "bcrypt",
    "sqlalchemy.dialects.postgresql",
    "starlette",
    "fastapi",
    "granian",
    "typer",
    "httpx",
    "jwt",
    "dockyard.api",
    "dockyard.app",
    "dockyard.auth",  # the accounts, keys and tokens behind the gate: built by `app` only
    "dockyard.accounts.users",
    "argon2",
    "dockyard.cli.main",
)

# One run answers the main process's tests: what it loaded, then the collector's state, then (loading
# nothing the lists above name) what pydantic, SQLAlchemy and tokenize did on the way to the fork.
MAIN_PROCESS = textwrap.dedent(
    """
    import gc, json, sys
    import granian

    def collections():
        return sum(generation["collections"] for generation in gc.get_stats())

    def stop_here(server):
        modules = sorted(sys.modules)
        facts = {
            "modules": modules, "frozen": gc.get_freeze_count(), "collectable": len(gc.get_objects()),
            "gc_enabled": gc.isenabled(), "collected": collections() - BEFORE,
        }
        import tokenize
        from pydantic.plugin import _loader
        from dockyard.db.base import Base

        facts["plugins_looked_for"] = _loader._plugins is not None
        facts["mappers_left"] = Base.registry._new_mappers
        facts["text_signatures"] = tokenize._compile.cache_info().currsize
        import dataclasses, re, typing
        from dockyard.cli import startup_cache

        cache = startup_cache.last
        facts["kept_from_text"] = cache.kept if cache is not None else 0
        facts["patched_at_the_fork"] = [
            hasattr(dataclasses, "exec"), hasattr(typing, "compile"), re._compiler.compile.__module__
        ]
        print(json.dumps(facts), flush=True)

    granian.Granian.serve = stop_here  # everything before the fork has run
    from dockyard.cli.entry import main

    BEFORE = collections()

    sys.argv = ["dockyard", "serve", "--config", sys.argv[1]]  # the `dockyard` command (cli.entry)
    main()
    """
)
HTTP_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from dockyard.app import worker_app

    app = worker_app()
    ready = sorted(sys.modules)  # what it loaded on its way to its first answer

    async def get(path):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 5000),
        }
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        return sent[0]["status"]

    async def requests():
        return [await get(path) for path in ("/v2/", "/v2/team/app/manifests/latest", "/healthz", "/readyz")]

    from dockyard.accounts.passwords import concurrent_hashes

    statuses = asyncio.run(requests())
    print(json.dumps({
        "statuses": statuses, "hashes": concurrent_hashes(), "ready": ready, "modules": sorted(sys.modules)
    }))
    """
)
JOB_RUNNER = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    from dockyard.cli.worker import main_in_serve

    def stop_when_running():
        while not callable(signal.getsignal(signal.SIGTERM)):  # run_worker's handler: it is running
            time.sleep(0.05)
        time.sleep(2)  # its first scheduled job (purging uploads) runs meanwhile
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_running, daemon=True).start()
    sys.argv = ["-c", "worker", "--config", sys.argv[1]]
    main_in_serve()
    print(json.dumps(sorted(sys.modules)), flush=True)
    """
)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("process-imports")
    path = directory / "config.yml"
    settings = {"datadir": str(directory / "data"), "http": {"workers": 2}, "log": {"level": "warn"}}
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(scope="module")
def main_process(config: Path) -> dict[str, Any]:
    """Serve's main process when Granian would fork the workers (MAIN_PROCESS). It leaves the data dir
    as serve does before its children start (migrated, with the administrator), for the others."""
    facts: dict[str, Any] = json.loads(run(MAIN_PROCESS, config, child_of_serve=False))
    return facts


@pytest.fixture(scope="module")
def main_process_modules(main_process: dict[str, Any]) -> list[str]:
    """What serve's main process holds when Granian would fork the workers."""
    modules: list[str] = main_process["modules"]
    return modules


def run(script: str, config: Path, child_of_serve: bool) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DOCKYARD_", "REGISTRY_"))}
    env["DOCKYARD_ADMIN_PASSWORD"] = "correct horse battery staple 42"
    # The settings `dockyard serve` validated, as it hands them down (to the server it execs into, and
    # from there to its children): none of these processes reads the config file.
    hand_down(load_settings(config, env), env)
    if child_of_serve:  # as serve marks its children (dockyard.lifecycle): this test is the parent
        env["_DOCKYARD_SERVE_PID"] = str(os.getpid())
    result = subprocess.run(
        [sys.executable, "-c", script, str(config)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def loaded(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden packages among `modules` (a package counts with its submodules)."""
    return sorted(
        {name for name in forbidden for module in modules if module == name or module.startswith(name + ".")}
    )


def test_serves_main_process_holds_the_workers_app_and_nothing_else(main_process_modules: list[str]) -> None:
    modules = main_process_modules
    assert "dockyard.cli.server" in modules and "granian" in modules  # it ran
    # Loaded once, while the start-up child runs: each worker forked from it starts with it.
    assert "dockyard.app" in modules and "dockyard.services" in modules
    assert loaded(modules, MAIN_PROCESS_FORBIDDEN) == []


def test_an_http_worker_loads_no_management_api_or_unconfigured_backend(
    config: Path, main_process_modules: list[str]
) -> None:
    answer = json.loads(run(HTTP_WORKER, config, child_of_serve=True))
    assert answer["statuses"] == [401, 401, 200, 200]  # the requests went through the app
    modules = answer["modules"]
    assert "dockyard.api.oci.routes" in modules and "sqlalchemy" in modules
    assert loaded(modules, HTTP_WORKER_FORBIDDEN) == []
    # Of dockyard's own modules, serve's main process holds only what the workers run (and its own).
    main_only = {name for name in main_process_modules if name.startswith("dockyard.")} - set(modules)
    own = ("", ".entry", ".job_child", ".server", ".slim", ".startup_cache")
    # ... and what a worker loads on the first token it signs or checks (the signing keys' store):
    # held there once for all of them, while the job runner, started on its own, never loads it.
    first_token = {"dockyard.auth.keystore"}
    assert sorted(main_only - first_token) == [f"dockyard.cli{name}" for name in own]
    # And what it loads on its way to its first answer, the main process loaded for it before the fork
    # (not in each worker, between its fork and its first answer: ~0.3 s of CPU each there, on the
    # cores the start-up has; issue 18 asks for /v2/ within 0.5 s of exec).
    assert sorted(set(answer["ready"]) - set(main_process_modules)) == []
    # Its share of the node's cores for password hashes (7 MiB each): the config's 2 workers split them.
    assert answer["hashes"] == max(1, (os.cpu_count() or 1) // 2)


def test_an_http_worker_of_serve_asks_the_database_nothing_before_its_first_answer(
    config: Path, main_process_modules: list[str]
) -> None:
    """Serve's start-up child made the first administrator before any worker started: a worker does not
    count the users again (a statement compiled, a connection opened: on the way to its first answer,
    issue 18)."""
    script = textwrap.dedent(
        """
        import json
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        asked = []
        event.listen(Engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: asked.append(sql))
        from dockyard.app import worker_app

        worker_app()
        print(json.dumps(asked), flush=True)
        """
    )
    assert json.loads(run(script, config, child_of_serve=True)) == []


# Where auth is off (as the test suite's servers run): no accounts, tokens or password hashes, nor the
# pull gate's signature verifiers (pull policies are set through dockyard's own auth's API).
AUTH_OFF_FORBIDDEN = (
    "dockyard.accounts.users",
    "dockyard.api.management.context",
    "dockyard.app.own_auth",
    "dockyard.signatures.services",
    "jwt",
    "cryptography",
    "argon2",
    "bcrypt",
)


def test_serves_main_process_loads_no_accounts_or_tokens_where_auth_is_off(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = tmp_path_factory.mktemp("process-imports-open")
    config = directory / "config.yml"
    settings = {"datadir": str(directory / "data"), "auth": {"enabled": False}, "log": {"level": "warn"}}
    config.write_text(yaml.safe_dump(settings))
    modules: list[str] = json.loads(run(MAIN_PROCESS, config, child_of_serve=False))["modules"]
    assert "dockyard.app" in modules and "dockyard.api.oci.gate" in modules  # it ran
    assert loaded(modules, AUTH_OFF_FORBIDDEN) == []


def test_the_job_runner_loads_no_web_stack(config: Path, main_process_modules: list[str]) -> None:
    modules = json.loads(run(JOB_RUNNER, config, child_of_serve=True))
    assert "dockyard.jobs.runner" in modules and "dockyard.gc.tasks" in modules
    assert loaded(modules, JOB_RUNNER_FORBIDDEN) == []


def test_the_job_runner_collects_no_garbage_while_it_starts(config: Path) -> None:
    """Serve's job runner imports with the collector off (~200 collections, ~70 ms of CPU, that freed
    next to nothing), then freezes what it loaded and built and turns it on before its runner starts."""
    collections = "sum(generation['collections'] for generation in gc.get_stats())"
    script = textwrap.dedent(
        f"""
        import gc, json, os, sys
        from dockyard.cli.job_child import CHILD_COMMAND
        from dockyard.jobs.services import JobRunner

        def start(self):
            print(json.dumps([gc.isenabled(), gc.get_freeze_count(), {collections} - BEFORE]), flush=True)
            os._exit(0)

        JobRunner.start = start
        sys.argv = ["-c", "worker"]
        BEFORE = {collections}
        exec(CHILD_COMMAND)
        """
    )
    enabled, frozen, collected = json.loads(run(script, config, child_of_serve=True))
    assert enabled and frozen > 100_000 and collected == 0


SHARES = [(2, 2, 1), (1, 2, 2), (2, 8, 4), (3, 8, 2), (16, 2, 1)]  # workers, CPUs, hashes each


@pytest.mark.parametrize(("workers", "cpus", "share"), SHARES)
def test_workers_share_the_cores_for_password_hashes(workers: int, cpus: int, share: int) -> None:
    assert hash_share(workers, cpus) == share


def test_serve_does_not_look_for_pydantic_plugins(main_process: dict[str, Any]) -> None:
    """pydantic scans every installed distribution's entry points for plugins when it builds its first
    model: ~70 ms of CPU at each start of serve (and of its job runner) for plugins dockyard has none of."""
    assert main_process["plugins_looked_for"] is False


def test_serves_main_process_configures_the_mappers_before_the_fork(main_process: dict[str, Any]) -> None:
    """SQLAlchemy configures the ORM's mappers at the first statement compiled; done in each worker, it
    cost ~0.02 s of CPU after its fork, on the way to its first answer. The main process does it once."""
    assert main_process["mappers_left"] is False


def test_serves_main_process_parses_no_text_signatures(main_process: dict[str, Any]) -> None:
    """pydantic reads the signature of each field's `default_factory`; of a builtin such as `list`, by
    parsing its text signature with `tokenize`, whose patterns it compiles first: ~10 ms of CPU before
    the fork (issue 18). The settings' list fields take a Python function (config.base.empty_list)."""
    assert main_process["text_signatures"] == 0


def test_serves_main_process_keeps_what_it_compiles_from_text(main_process: dict[str, Any]) -> None:
    """Dataclasses' methods, annotations as text, regular expressions: looked up in the last start's
    table through the whole import (cli.startup_cache), and Python's own functions back for the fork."""
    from dockyard.cli import startup_cache

    if not startup_cache.SUPPORTED:
        pytest.skip("patches CPython 3.11's modules only")
    assert main_process["kept_from_text"] > 1000
    assert main_process["patched_at_the_fork"] == [False, False, "re._compiler"]


def subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *subclasses(direct))]


def test_models_and_settings_are_declared_with_annotations_python_has_evaluated() -> None:
    """SQLAlchemy reads each mapped column's type from its annotation, pydantic each settings field's.
    Given as text (`from __future__ import annotations`, which the rest of dockyard uses), each is
    evaluated (compiled) when the class is built, in serve's main process before the fork: SQLAlchemy
    cleans it up with regular expressions and `eval`s it, pydantic makes a `typing.ForwardRef` of it
    (issue 18; docs/benchmarks.md, "Start-up and stop"). The models' and the settings' modules leave
    that import out (db/base.py, config/base.py)."""
    from dockyard.config.base import Section
    from dockyard.config.settings import Settings
    from dockyard.db.all_models import load_all_models
    from dockyard.db.base import Base

    load_all_models()
    models = [mapper.class_ for mapper in Base.registry.mappers]
    sections = subclasses(Section)
    assert len(models) > 40 and Settings in sections
    textual = [
        f"{cls.__module__}.{cls.__qualname__}.{name}"
        for cls in (*models, *sections)
        for name, annotation in vars(cls).get("__annotations__", {}).items()
        if isinstance(annotation, str)
    ]
    assert textual == []


# The management API with every router included, as a worker holds it once its calls (the portal's
# pages, say) have reached every router (api/management/router_groups.py).
WHOLE_API = (
    "import json, sys\nfrom dockyard.api.management.app import create_management_app\n"
    "create_management_app(None)\nprint(json.dumps(sorted(sys.modules)))"
)


@pytest.fixture(scope="module")
def whole_api_modules() -> list[str]:
    """What a process holds once it has built the management API with every router (WHOLE_API)."""
    result = subprocess.run([sys.executable, "-c", WHOLE_API], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return modules


def test_the_management_api_loads_no_http_client(whole_api_modules: list[str]) -> None:
    """A worker builds the management API on its first call to it, each router on the first call under
    its paths, so what its routers import stays in that worker for good. httpx (with h11,
    httpcore, certifi and click: ~5 MiB) is for speaking to remote registries: only a call that does
    (an endpoint's test, a replication run) loads it."""
    modules = whole_api_modules
    assert "dockyard.api.management.routers.endpoints" in modules
    assert loaded(modules, ("httpx", "httpcore", "h11", "click")) == []


def test_the_management_api_loads_no_layer_reader_or_job_code(whole_api_modules: list[str]) -> None:
    """The layer browser's readers (`dockyard.scanning`, ~1 MiB with the inventory its diffs read) load
    on the first call that reads a layer; the routers that queue jobs (retention, replication) name
    their kinds without loading the job runner or the jobs' code, which run in the job runner."""
    modules = whole_api_modules
    assert "dockyard.api.management.routers.files" in modules
    assert "dockyard.api.management.routers.replication" in modules
    job_code = ("dockyard.jobs.runner", "dockyard.replication.tasks", "dockyard.retention.tasks")
    assert loaded(modules, ("dockyard.scanning", "packageurl", *job_code)) == []


def test_serves_main_process_freezes_its_objects_before_the_fork(main_process: dict[str, Any]) -> None:
    """The garbage collector writes into each object it examines, copying its page into the process that
    ran it: the main process freezes what it holds (the preloaded app) before Granian forks the workers
    from it, so neither its collections nor theirs unshare those pages (docs/benchmarks.md, "Memory").
    The collector is off until then (its ~200 collections cost ~65 ms of CPU on the way to the fork,
    issue 18), and on again for the workers and this process."""
    frozen, collectable = main_process["frozen"], main_process["collectable"]
    enabled, collected = main_process["gc_enabled"], main_process["collected"]
    assert frozen > 100_000 and collectable < frozen / 100
    assert enabled and collected == 0


def test_an_http_worker_loads_the_routers_a_management_call_needs(
    config: Path, main_process_modules: list[str]
) -> None:
    """A call under /api/v1 builds the API (FastAPI) and includes the routers with routes under its
    path's first segment, not the other routers and their models (api/management/router_groups.py)."""
    requests = '("/v2/", "/v2/team/app/manifests/latest", "/healthz", "/readyz")'
    assert requests in HTTP_WORKER
    script = HTTP_WORKER.replace(requests, '("/api/v1/jobs", "/api/v1/repositories")')  # migrated by serve
    answer = json.loads(run(script, config, child_of_serve=True))
    assert answer["statuses"] == [401, 200]  # jobs are for administrators; anyone lists public repositories
    package = "dockyard.api.management.routers."
    routers = sorted(name.removeprefix(package) for name in answer["modules"] if name.startswith(package))
    assert routers == ["artifact_contents", "files", "jobs", "repositories", "scans", "signatures"]


PRELOAD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from dockyard.app import preload
    from dockyard.config.loader import load_settings

    preload(load_settings(Path(sys.argv[1]), {}))
    print(json.dumps(sorted(sys.modules)))
    """
)


def test_serve_imports_the_database_driver_before_the_fork(tmp_path: Path) -> None:
    """On PostgreSQL each HTTP worker and the job runner imported psycopg after their fork, 53-56 ms of
    CPU each on the way to the first answer (issue 18): serve's main process imports the driver with
    the dialect, once for all of them. The embedded default's (sqlite3) costs nothing more."""
    path = tmp_path / "config.yml"
    url = "postgresql://dockyard@127.0.0.1:9/unreached"
    path.write_text(yaml.safe_dump({"datadir": str(tmp_path / "data"), "database": {"url": url}}))
    command = [sys.executable, "-c", PRELOAD, str(path)]  # preload opens no connection: none is reached
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "psycopg" in modules and "sqlalchemy.dialects.postgresql.psycopg" in modules
