"""Shared fixtures: a real dockyard server per session (and factories for custom configs)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from dockyard.accounts import passwords
from tests.support import postgres as postgres_support
from tests.support import server as server_support
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

# argon2id at its cheapest in the test processes and every server they start (they inherit it): ~25 ms
# of CPU per hash and per verify was a quarter of the account-heavy modules' CPU. The production
# parameters have their own test (tests/unit/accounts/test_passwords_and_names.py).
os.environ[passwords.INSECURE_TEST_HASHES_ENV] = "1"


def _one_default_ssl_context_per_process() -> None:
    """httpx builds a new default SSL context (certifi's CA bundle read and parsed: ~35 ms of CPU) for
    every client and every `httpx.get(...)`, though the suite's servers speak plain HTTP on loopback:
    ~600 contexts (24 s of CPU) in the test processes of the authorization matrix, replication and move
    modules, 340 (14 s) in test_api_basic_cache alone. The default one (verify=True, no client
    certificate) is built once per test process and shared; any other `verify` or `cert` builds its own,
    as before. Nothing in the suite changes a context after httpx made it (httpcore sets its ALPN to
    HTTP/1.1 at each TLS connect: no client here asks for HTTP/2)."""
    import functools

    import httpx._transports.default as transports

    build = transports.create_ssl_context

    @functools.cache
    def default(trust_env: bool, cert_file: str | None, cert_dir: str | None) -> Any:
        return build(verify=True, cert=None, trust_env=trust_env)

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is True and cert is None:
            return default(trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        return build(verify=verify, cert=cert, trust_env=trust_env)

    transports.create_ssl_context = create_ssl_context


_one_default_ssl_context_per_process()

# `database`, `database_url`: for tests that run on SQLite and PostgreSQL by themselves.
pytest_plugins = ["tests.support.databases", "tests.support.cpu_accounting", "tests.support.module_order"]

# The suite runs 2 processes beside real servers on 2 CPUs: generation speed and per-example time say
# nothing about the code there (CI failed once on "input generation is slow"). The examples still run.
settings.register_profile("shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")


@pytest.fixture(scope="session", autouse=True)
def _servers_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """DOCKYARD_TEST_DB=postgresql runs every server the tests start on a database of its own (one per
    datadir), on the run's throwaway PostgreSQL (`postgres_server`, tests/support/postgres_shared.py: one
    for every test process of the run) (default: sqlite, a file in the datadir)."""
    choice = os.environ.get("DOCKYARD_TEST_DB", "sqlite")
    if choice == "sqlite":
        yield
        return
    if choice != "postgresql":
        raise pytest.UsageError(f"DOCKYARD_TEST_DB={choice!r}: expected sqlite or postgresql")
    cluster: postgres_support.PostgresServer = request.getfixturevalue("postgres_server")
    urls: dict[str, str] = {}

    def database_for(datadir: str) -> str:
        # Servers get the plain postgresql:// form users write in their config.
        if datadir not in urls:
            # Already migrated (a template copy): faster than each server migrating its own.
            created = cluster.create_database(migrated=True)
            urls[datadir] = created.replace("postgresql+psycopg://", "postgresql://", 1)
        return urls[datadir]

    server_support.database_url_factory = database_for
    # The account unit tests' databases (tests/unit/accounts/fixtures.py) go there too.
    previous = os.environ.get("DOCKYARD_TEST_POSTGRES_URL")
    os.environ["DOCKYARD_TEST_POSTGRES_URL"] = previous or cluster.database_url("postgres")
    try:
        yield
    finally:
        server_support.database_url_factory = None
        if previous is None:
            del os.environ["DOCKYARD_TEST_POSTGRES_URL"]


@pytest.fixture(scope="module", autouse=True)
def _drop_module_databases() -> Iterator[None]:
    """The PostgreSQL databases a test module made are dropped when it ends (its servers have stopped:
    autouse, this fixture's teardown comes after theirs). The throwaway clusters live on a tmpfs, where
    a database kept to the end of the pass would be memory (tests/support/postgres.py)."""
    mark = postgres_support.databases_made()
    yield
    if postgres_support.databases_made() > mark:
        postgres_support.drop_unused_databases(mark)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One running dockyard (defaults: SQLite + filesystem, deletes enabled) shared by a test session."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


@pytest.fixture
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningServer]]:
    """Start extra servers with their own config; all are stopped after the test."""
    started: list[RunningServer] = []

    def factory(config: dict[str, Any] | None = None, **kwargs: Any) -> RunningServer:
        running = start_server(tmp_path_factory.mktemp("server"), config, **kwargs)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        yield http


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name unique to the test, valid per the spec's grammar."""
    import re

    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:80] or "repo"
    return f"test/{name}"


# Tests whose outcome does not depend on DOCKYARD_TEST_DB: the SQLite pass runs them, the PostgreSQL pass
# (`make test`'s second pass, `-m "not db_independent"`) does not run them again. Single tests say so with
# `@pytest.mark.db_independent`; whole files and directories are listed here (paths from the repo root).
DB_INDEPENDENT_PATHS = (
    # Choose their databases themselves: parametrized over SQLite and PostgreSQL, or always PostgreSQL.
    "tests/unit/audit/",
    "tests/unit/gc/",
    "tests/unit/jobs/",
    "tests/unit/retention/",
    "tests/unit/vulndb/",
    "tests/integration/test_postgresql.py",
    "tests/cluster/",  # always PostgreSQL
    "tests/images/",  # containers: SQLite in the image's volume, or the compose example's PostgreSQL
    # SQLite on purpose: edits the SQLite file behind the registry's back.
    "tests/integration/test_redis.py",
    # S3 requests per push, counted on SeaweedFS: its registry is always on a SQLite file.
    "tests/integration/test_s3_push_requests.py",
    # The embedded default on purpose: what its processes load.
    "tests/unit/test_process_imports.py",
    # A browser's run through the portal: what it shows is the API's, which both passes test over HTTP.
    "tests/e2e/test_portal.py",
    "tests/e2e/test_portal_oidc.py",  # the same, signed on at a real OpenID provider
    "tests/e2e/test_portal_ldap.py",  # the same, logged in as directory users of a real slapd
    # The portal's pages over HTTP: every read and change is an in-process /api/v1 call with the user's API
    # session, whose database work (sessions dying on logout, disable, delete, a new password) runs on
    # PostgreSQL in test_session_revocation.py and the API tests; the portal adds no query of its own.
    "tests/integration/test_portal.py",
    # No metadata database at all.
    "tests/conformance/",
    "tests/unit/content/",
    "tests/unit/config/",
    "tests/unit/storage/",
    "tests/unit/observability/",
    "tests/unit/cli/",
    "tests/unit/ui/",
    "tests/unit/db/",
    "tests/unit/coordination/",  # feeds, caches, locks: in-process, files and Redis
    "tests/unit/maintenance/",
    "tests/unit/oidc/test_idtoken.py",  # the ID token's checks: keys and tokens made in the test
    "tests/unit/oidc/test_client.py",  # the provider client against loopback stand-ins
    # Pure logic, tar and file walkers, parsers: not one of their tests opened a database or started a
    # server in the SQLite pass (checked with a SQLAlchemy connect listener and a watch on subprocesses).
    # Modules with some database tests stay in the PostgreSQL pass whole.
    # Files, not directories: a new module with database tests is in the PostgreSQL pass by default.
    "tests/unit/scanning/test_walker.py",
    "tests/unit/scanning/test_detectors.py",  # rpm's own SQLite file is image content, not metadata
    "tests/unit/scanning/test_models.py",
    "tests/unit/scanning/test_layerfiles.py",
    "tests/unit/upstream/test_addresses.py",
    "tests/unit/upstream/test_rechunk.py",
    "tests/unit/upstream/test_tokens.py",
    "tests/unit/deploy/test_alert_rules.py",
    "tests/unit/deploy/test_grafana_dashboard.py",
    "tests/unit/endpoints/test_secrets.py",
    "tests/unit/proxy/test_decisions.py",
    "tests/unit/proxy/test_mirrors.py",
    "tests/unit/webhooks/test_pulls.py",
    "tests/unit/api/test_allowlist.py",
    "tests/unit/api/test_authorization.py",
    "tests/unit/api/test_error_mapping.py",
    "tests/unit/api/test_health.py",
    "tests/unit/api/test_middleware.py",
    "tests/unit/api/management/test_listing.py",
    "tests/unit/api/management/test_sessions.py",
    "tests/unit/auth/test_basic_single_flight.py",
    "tests/unit/auth/test_external.py",
    "tests/unit/auth/test_htpasswd.py",
    "tests/unit/auth/test_scopes.py",
    "tests/unit/auth/test_standing.py",
    "tests/unit/accounts/test_limiter.py",
    "tests/unit/accounts/test_passwords_and_names.py",
    "tests/unit/projects/test_pull_gate.py",
    "tests/unit/projects/test_rbac.py",
    # Real clients: what docker, podman, skopeo, buildah, oras, ctr and python-dxf exchange with dockyard is
    # the same on either metadata database. The database work behind those exchanges (pushes, pulls,
    # logins and tokens, LDAP, quotas, request limits, proxying, notifications, webhooks, the audit log)
    # runs on PostgreSQL in tests/integration, which makes the same requests over HTTP. One flow stays in
    # the PostgreSQL pass as a canary: see DB_DEPENDENT_TESTS.
    "tests/e2e/",
    # The CLI's commands that talk to a server over HTTP only (`dockyard login`, then /api/v1; the import
    # contracts keep server-side packages out of the CLI's API client): the routes' database work runs on
    # PostgreSQL in the API tests (test_management_api, test_authz_matrix, test_endpoints_api,
    # test_webhooks, test_retention, test_jobs; hourly pull counts in test_audit_trail). Single such tests
    # elsewhere carry the marker themselves.
    "tests/integration/test_cli.py",
    "tests/integration/test_cli_endpoints.py",
    "tests/integration/test_cli_cache.py",  # `cache warm`: the proxy's database work is test_proxy's
    # Package inventories and SBOMs read from image content: what they store is a referrer pushed through
    # the registry's own manifest path (test_push_manifests, test_discovery run it on PostgreSQL), and the
    # SBOM job is a job like the others (tests/unit/jobs runs the queue on both databases).
    "tests/integration/test_inventory.py",
    # Process lifecycle: SIGTERM's drain of a streaming upload (the upload's database work is the push
    # path's, which test_push_blobs and test_upload_sessions run on PostgreSQL).
    "tests/integration/test_drain.py",
    # The Harbor scanner adapter protocol against external adapters: the reports are stored as the built-in
    # scans' are, which test_scans_api and test_scan run on PostgreSQL.
    "tests/integration/test_external_scanners.py",
)

# Tests under DB_INDEPENDENT_PATHS that the PostgreSQL pass runs all the same (node ids).
DB_DEPENDENT_TESTS = frozenset(
    {
        # A real client's push and pull against a server on PostgreSQL, bit for bit.
        "tests/e2e/test_skopeo.py::test_copy_in_and_out_keeps_manifest_and_blobs_bit_for_bit",
    }
)


# db_independent tests that `make test` runs in its PostgreSQL pass instead of its SQLite pass (the two run
# at the same time; the SQLite pass ran ~4 minutes longer, alone on the machine at the end). Only tests whose
# databases are their own (always PostgreSQL, whatever DOCKYARD_TEST_DB says) or that have none: either
# pass runs them the same. `make test-sqlite` alone still runs them.
POSTGRES_PASS_PATHS = (
    "tests/cluster/",  # its own PostgreSQL, Redis and SeaweedFS
    "tests/images/",  # containers: the image's SQLite, the compose example's PostgreSQL; no server here
    "tests/integration/test_postgresql.py",  # its own PostgreSQL
    "tests/integration/test_database_outage.py",  # its own PostgreSQL, stopped and started again
    "tests/conformance/test_s3_driver.py",  # SeaweedFS, no metadata database
    "tests/conformance/test_storage_drivers.py",  # no metadata database
    # The upstream client against registries; its token-auth dockyard's database is not what it checks.
    "tests/conformance/test_upstream.py",
    # A SQLite file of their own, whatever DOCKYARD_TEST_DB says: with them the two passes end together
    # (CI on 2026-12-07: SQLite pass 669 s, PostgreSQL 592 s; these three took ~49 s of a SQLite
    # worker's wall).
    "tests/unit/test_process_imports.py",  # the embedded default's processes
    "tests/integration/test_redis.py",
    "tests/integration/test_s3_push_requests.py",
    # Each test on both databases by itself (`database_url`'s two parameters); CI-3 the same day: SQLite
    # pass 582 s, PostgreSQL 486 s, these two directories ~65 s of a SQLite worker's wall.
    "tests/unit/jobs/",
    "tests/unit/gc/",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "db_independent: runs the same whatever DOCKYARD_TEST_DB says (no metadata DB, or picks its own "
        "databases), so only the SQLite pass runs it",
    )
    config.addinivalue_line(
        "markers",
        "postgres_pass: db_independent, and `make test` runs it in the PostgreSQL pass, not the SQLite one "
        "(POSTGRES_PASS_PATHS)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parent.parent
    relatives: dict[str, str] = {}  # per file, not per test: resolve() is a syscall per path component
    for item in items:
        relative = relatives.get(str(item.path))
        if relative is None:
            path = item.path.resolve()
            relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
            relatives[str(item.path)] = relative
        if "/e2e/" in relative:
            item.add_marker(pytest.mark.e2e)
        if relative.startswith(DB_INDEPENDENT_PATHS) and item.nodeid not in DB_DEPENDENT_TESTS:
            item.add_marker(pytest.mark.db_independent)
        # Only db_independent tests move: a test the PostgreSQL pass runs anyway stays in both.
        if relative.startswith(POSTGRES_PASS_PATHS) and item.get_closest_marker("db_independent"):
            item.add_marker(pytest.mark.postgres_pass)
    # A renamed test must not drop out of the PostgreSQL pass unseen.
    for test in DB_DEPENDENT_TESTS:
        path, name = test.split("::", 1)
        source = root / path
        if not source.is_file() or f"def {name.split('[', 1)[0]}(" not in source.read_text():
            raise pytest.UsageError(f"DB_DEPENDENT_TESTS names {test}, which is not there (renamed?)")
