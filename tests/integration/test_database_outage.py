"""PostgreSQL going away under a running node, and coming back.

While the database is down the node keeps answering, fast: every request that needs the database gets a
503 the client retries (OCI `UNAVAILABLE`, management `SERVICE_UNAVAILABLE`, both with Retry-After),
`/healthz` stays 200 and `/readyz` says 503, so a load balancer takes the node out instead of timing
out on it. Once PostgreSQL is back the node serves again by itself within seconds, and everything pushed
before is still there, byte for byte.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    describe,
    descriptor,
    digest_of,
    image_manifest,
)
from tests.support.postgres import PostgresCluster, _as_postgres_user, _wait_until_ready, start_postgres
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

pytestmark = pytest.mark.db_independent  # always its own PostgreSQL: it stops and restarts it

ADMIN = ("admin", "outage-admin-password")
METRICS_TOKEN = "outage-metrics-token-0123456789abcdef"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}
ANSWER_WITHIN = 5.0  # seconds: a node without its database answers at least this fast
BACK_WITHIN = 15.0  # seconds from PostgreSQL answering again to the node serving again
STOP_SIGNALS = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}  # pg_ctl stop -m fast / immediate


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """One cluster for the module: each test stops it and starts it again, and gets a database and a
    node of its own. Its commits survive an immediate stop (the tests check what was pushed before one)."""
    cluster = start_postgres(committed_survives_a_crash=True)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def node(postgres: PostgresCluster, tmp_path: Path) -> Iterator[RunningServer]:
    if postgres.process.poll() is not None:  # a test before this one failed while it was down
        start_postgres_again(postgres)
        _wait_until_ready(postgres)
    url = postgres.create_database(migrated=True).replace("postgresql+psycopg://", "postgresql://", 1)
    config = {
        "database": {"url": url},
        "auth": {"enabled": True},
        "http": {"workers": 1},
        "metrics": {"token": METRICS_TOKEN},
    }
    server = start_server(tmp_path / "node", config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})
    try:
        yield server
    finally:
        server.stop()


def stop_postgres(postgres: PostgresCluster, mode: str) -> None:
    postgres.process.send_signal(STOP_SIGNALS[mode])
    postgres.process.wait(timeout=30)


def start_postgres_again(postgres: PostgresCluster) -> None:
    """The same command line (data directory, port), as a supervisor restarts it."""
    with (postgres.root / "postgres.log").open("ab") as log:
        postgres.process = subprocess.Popen(
            postgres.process.args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_as_postgres_user(),
        )


def timed(request: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = request()
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, *codes: str) -> None:
    assert response.status_code == 503, describe(response)
    assert int(response.headers["Retry-After"]) > 0
    # UNAVAILABLE is registry:2's code for a 503 (the OCI spec lists none for it); clients go by the status.
    assert [error["code"] for error in response.json()["errors"]] == list(codes), describe(response)
    # Nothing about the backend leaks to clients.
    assert "postgres" not in response.text.lower() and "127.0.0.1" not in response.text


def push_image(oci: OCIClient, repo: str, tag: str) -> tuple[bytes, bytes, bytes]:
    config = f'{{"architecture":"amd64","os":"linux","tag":"{tag}"}}'.encode()
    layer = f"the layer of {repo}:{tag}".encode() * 1000
    oci.push_blob(repo, config)
    oci.push_blob(repo, layer)
    body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
    oci.push_manifest(repo, tag, body, OCI_MANIFEST)
    return config, layer, body


def eventually_ok(request: Callable[[], httpx.Response], within: float) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        try:
            response = request()
            if response.status_code < 500 or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


class Load:
    """Threads pushing blobs and asking for manifests the whole time, noting how long each answer took."""

    def __init__(self, server: RunningServer, threads: int = 4) -> None:
        self.server = server
        self.answers: list[tuple[float, int | str, float]] = []  # (when, status, seconds)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, number: int) -> None:
        with httpx.Client(base_url=self.server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
            count = 0
            while not self._stop.is_set():
                count += 1
                data = f"load {number} {count} {time.time()}".encode()
                started = time.monotonic()
                try:
                    if count % 2:
                        url = f"/v2/load{number}/blobs/blobs/uploads/?digest={digest_of(data)}"
                        status: int | str = http.post(url, content=data).status_code
                    else:
                        status = http.get(f"/v2/load{number}/blobs/manifests/{digest_of(data)}").status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.answers.append((started, status, time.monotonic() - started))

    def between(self, start: float, end: float) -> list[tuple[int | str, float]]:
        return [(status, seconds) for when, status, seconds in self.answers if start <= when < end]

    def wait_for_answers(self, count: int, since: float = 0.0, within: float = 60.0) -> None:
        """Until `count` requests begun at `since` or later were answered (or failed)."""
        deadline = time.monotonic() + within
        while len(self.between(since, float("inf"))) < count:
            assert time.monotonic() < deadline, f"the load got fewer than {count} answers in {within} s"
            time.sleep(0.05)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_node_answers_503_fast_while_postgres_is_down_and_recovers(
    postgres: PostgresCluster, node: RunningServer, mode: str
) -> None:
    http = httpx.Client(base_url=node.url, auth=ADMIN, timeout=HTTP_TIMEOUT)
    oci = OCIClient(http)
    config, layer, manifest = push_image(oci, "outage/app", "before")

    with Load(node) as load:
        load.wait_for_answers(8)  # the load runs before the outage
        stop_postgres(postgres, mode)
        stopped_at = time.monotonic()

        # Every kind of request answers at once: liveness yes, readiness no, the rest a retryable 503.
        for _ in range(3):
            healthz, seconds = timed(lambda: http.get("/healthz"))
            assert healthz.status_code == 200 and seconds < ANSWER_WITHIN, (healthz.status_code, seconds)
            readyz, seconds = timed(lambda: http.get("/readyz"))
            assert readyz.status_code == 503 and seconds < ANSWER_WITHIN, (readyz.text, seconds)
            assert readyz.json()["checks"]["database"] != "ok"
            assert readyz.json()["checks"]["storage"] == "ok"
            # Prometheus still scrapes the node, and sees why it is unready (the alerts' input).
            metrics, seconds = timed(
                lambda: httpx.get(f"{node.url}/metrics", headers=SCRAPE, timeout=HTTP_TIMEOUT)
            )
            assert metrics.status_code == 200 and seconds < ANSWER_WITHIN, (metrics.status_code, seconds)
            assert 'dockyard_up{check="database"} 0.0' in metrics.text
            assert 'dockyard_up{check="storage"} 1.0' in metrics.text
            assert "dockyard_ready 0.0" in metrics.text

            answer, seconds = timed(lambda: oci.start_upload("outage/app"))
            assert seconds < ANSWER_WITHIN, seconds
            assert_unavailable(answer, "UNAVAILABLE")
            answer, seconds = timed(lambda: oci.get_manifest("outage/app", digest_of(b"never pushed")))
            assert seconds < ANSWER_WITHIN, seconds
            assert_unavailable(answer, "UNAVAILABLE")
            answer, seconds = timed(lambda: http.get("/api/v1/projects"))
            assert seconds < ANSWER_WITHIN, seconds
            assert_unavailable(answer, "SERVICE_UNAVAILABLE")
            # A login (`docker login` asks /token) as another user than the one the load remembers.
            answer, seconds = timed(
                lambda: httpx.get(f"{node.url}/token", auth=("nobody", "x"), timeout=HTTP_TIMEOUT)
            )
            assert seconds < ANSWER_WITHIN, seconds
            assert answer.status_code == 503 and answer.headers["Retry-After"], describe(answer)
            # The load goes on between two rounds, past the outage's first half second.
            load.wait_for_answers(8, since=max(time.monotonic(), stopped_at + 0.5))

        # Taken before the start: a request begun once PostgreSQL accepts connections again, and before
        # the start returned, may well succeed (seen: a 201 counted "during the outage").
        restarting_at = time.monotonic()
        start_postgres_again(postgres)
        restarted_at = time.monotonic()
        readyz = eventually_ok(lambda: http.get("/readyz"), BACK_WITHIN)
        assert readyz.status_code == 200, readyz.text
        back_at = time.monotonic()
        load.wait_for_answers(8, since=back_at + 1)  # the load runs on against the database that is back

    during = load.between(stopped_at + 0.5, restarting_at)  # the first half second may still succeed
    assert during, "the load made no requests during the outage"
    slowest = max(seconds for _, seconds in during)
    assert slowest < ANSWER_WITHIN, f"a request took {slowest:.1f}s during the outage"
    assert {status for status, _ in during} <= {503}, sorted({str(status) for status, _ in during})
    after = load.between(back_at + 1, time.monotonic())
    assert after and {status for status, _ in after} <= {201, 404}, sorted({str(s) for s, _ in after})
    print(f"\n{mode}: {len(during)} requests during the outage, slowest {slowest:.2f}s; "
          f"ready again {back_at - restarted_at:.1f}s after PostgreSQL restarted")  # fmt: skip

    # Nothing pushed before is lost, and pushing works again.
    pulled = oci.get_manifest("outage/app", "before", accept=OCI_MANIFEST)
    assert pulled.status_code == 200 and pulled.content == manifest, describe(pulled)
    for blob in (config, layer):
        answer = http.get(f"/v2/outage/app/blobs/{digest_of(blob)}")
        assert answer.status_code == 200 and answer.content == blob, describe(answer)
    push_image(oci, "outage/app", "after")
    assert sorted(oci.tags("outage/app") or []) == ["after", "before"]
    projects = http.get("/api/v1/projects")
    assert projects.status_code == 200, describe(projects)
    http.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_the_first_requests_after_a_quiet_postgres_restart_succeed(
    postgres: PostgresCluster, node: RunningServer, mode: str
) -> None:
    """PostgreSQL restarts between two requests, with nothing running to notice: every connection the
    node keeps is gone, and it does not know. The next requests still succeed, none a 503: a dropped
    connection fails at its transaction's BEGIN, before anything ran, and the node begins again on a
    new one (db.session); the manifest and blob reads do the same on their own connections
    (db.lookups)."""
    http = httpx.Client(base_url=node.url, auth=ADMIN, timeout=HTTP_TIMEOUT)
    oci = OCIClient(http)
    _, layer, manifest = push_image(oci, "restart/app", "before")
    assert http.get("/api/v1/projects").status_code == 200

    stop_postgres(postgres, mode)
    start_postgres_again(postgres)
    _wait_until_ready(postgres)  # asked directly: the node sees nothing of the restart until a request

    projects = http.get("/api/v1/projects")  # a read, in a transaction
    assert projects.status_code == 200, describe(projects)
    push_image(oci, "restart/app", "after")  # uploads, blobs and a manifest PUT: writes
    assert sorted(oci.tags("restart/app") or []) == ["after", "before"]
    pulled = oci.get_manifest("restart/app", "before", accept=OCI_MANIFEST)
    assert pulled.status_code == 200 and pulled.content == manifest, describe(pulled)
    answer = http.head(f"/v2/restart/app/blobs/{digest_of(layer)}")
    assert answer.status_code == 200, describe(answer)
    http.close()
