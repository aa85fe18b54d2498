"""`dockyard move` end to end: a registry on SQLite and a disk, with users, robots, projects, quotas,
retention and immutability rules, jobs, signed-in sessions, tokens, an unfinished upload and images
(multi-arch, referrers), is moved onto a real PostgreSQL and SeaweedFS (S3) while it serves and a
client keeps pushing; then a server on the new config must be the same registry: the same rows in
every table, logins, old tokens and sessions valid, every pull bit for bit, every push that got a 201
there. Also: a move that fails in its window leaves the registry writable, and the runtime read-only
switch on its own."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, insert, select, text

from dockyard.accounts.models import GroupRow, OIDCLoginStateRow, UserGroupRow, UserRow
from dockyard.db.engine import build_engine
from dockyard.maintenance.tables import model_tables, row_counts
from dockyard.projects.models import ProjectRow
from dockyard.proxy.models import ProxyTagRow
from dockyard.registry.models import Repository
from tests.support.cli import run_dockyard
from tests.support.cosign import make_ca, make_key, payload, push_sig_tag, signature_layer
from tests.support.layers import file
from tests.support.layers import layer as tar_layer
from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    describe,
    descriptor,
    digest_of,
    empty_descriptor,
    error_codes,
    image_manifest,
    index_manifest,
)
from tests.support.postgres import PostgresCluster, throwaway_postgres
from tests.support.seaweedfs import RunningSeaweedFS, start_seaweedfs
from tests.support.server import RunningServer
from tests.support.sigstore import PrivateSigstore
from tests.support.tables import dump_tables
from tests.support.timeouts import HTTP_TIMEOUT

pytestmark = pytest.mark.db_independent  # SQLite + disk onto PostgreSQL + S3, whatever DOCKYARD_TEST_DB says

ADMIN = ("admin", "move-admin-password-1")
ALICE = ("alice", "alice-password-0123")
READ_ONLY_MESSAGE = "read-only maintenance mode"


def dockyard(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_dockyard(*args, env={**os.environ, "COLUMNS": "120", **(env or {})})


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    with throwaway_postgres() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSeaweedFS]:
    store = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield store
    finally:
        store.stop()


def source_config(datadir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "datadir": str(datadir),
        "database": {"url": f"sqlite:///{datadir / 'dockyard.db'}"},
        "auth": {"enabled": True, "token": {"expiration": "30m"}},
        "http": {"workers": 2},  # the switch must reach every worker process
        "jobs": {"run_in_serve": True},  # job logs, retention runs
        # A listener that never resolves: events, the endpoint's cursor and a failed delivery are logged.
        "notifications": {
            "endpoints": [
                {"name": "listener", "url": "https://hook.invalid/", "threshold": 1, "backoff": "1h"}
            ]
        },
        **extra,
    }


def s3_storage_file(path: Path, store: RunningSeaweedFS, root: str) -> Path:
    storage = {
        "s3": {
            "bucket": store.bucket,
            "region": "us-east-1",
            "regionendpoint": store.endpoint,
            "accesskey": store.access_key,
            "secretkey": store.secret_key,
            "rootdirectory": root,
        },
        # The new server streams blobs itself, so the checks read them through it.
        "redirect": {"disable": True},
    }
    path.write_text(yaml.safe_dump({"storage": storage}))
    return path


def plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# --- the install ------------------------------------------------------------------------------
@dataclass
class Install:
    pushed: dict[tuple[str, str], bytes]
    robot: tuple[str, str]
    personal_token: str
    alice_token: str  # a /v2 bearer token issued by the old server
    session_cookie: str
    csrf_token: str
    upload_location: str
    upload_size: int
    referrer_subject: str
    referrer_digest: str
    settings_seen: dict[str, Any] = field(default_factory=dict)


def api(server: RunningServer, auth: tuple[str, str] = ADMIN) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", auth=auth, timeout=HTTP_TIMEOUT)


def call(client: httpx.Client, method: str, path: str, expected: int, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    assert response.status_code == expected, f"{method} {path}: {describe(response)}"
    return response.json() if response.content else None


def bearer(server: RunningServer, auth: tuple[str, str], *repos: str, actions: str = "pull,push") -> str:
    scopes = [("scope", f"repository:{repo}:{actions}") for repo in repos]
    answer = httpx.get(
        f"{server.url}/token", params=[("service", "dockyard"), *scopes], auth=auth, timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 200, describe(answer)
    token: str = answer.json()["token"]
    return token


def registry_client(server: RunningServer, token: str) -> OCIClient:
    return OCIClient(
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT)
    )


def wait_for_job(admin: httpx.Client, job_id: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = call(admin, "GET", f"/jobs/{job_id}", 200)
        if job["status"] in ("succeeded", "failed"):
            assert job["status"] == "succeeded", job
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def populate(server: RunningServer) -> Install:
    """Everything an install has, made the way an administrator and clients make it."""
    admin = api(server)
    call(admin, "POST", "/users", 201, json={"username": ALICE[0], "password": ALICE[1]})
    for name, public in (("team", False), ("library", True)):
        call(admin, "POST", "/projects", 201, json={"name": name, "public": public})
    call(admin, "PUT", "/projects/team/quota", 200, json={"limit_bytes": 1 << 30, "warn_percent": 90})
    policy = {"rules": [{"action": "latestPushedK", "count": 50}], "schedule": "0 3 * * *"}
    call(admin, "PUT", "/projects/team/retention", 200, json=policy)
    call(admin, "POST", "/projects/team/immutable-rules", 201, json={"tag_pattern": "release-*"})
    call(admin, "POST", "/projects/team/members", 201, json={"role": "developer", "user": ALICE[0]})
    ci = {"name": "ci", "actions": ["pull", "push"]}
    robot = call(admin, "POST", "/projects/team/robots", 201, json=ci)
    call(admin, "PUT", "/jobs/schedules/gc", 200, json={"cron": "0 4 * * 0"})
    upstream = {"kind": "basic", "username": "mirror", "secret": "upstream-password"}
    endpoint = {"name": "upstream", "url": "https://registry.invalid", "credentials": upstream}
    call(admin, "POST", "/endpoints", 201, json=endpoint)  # credentials sealed under signing-key-secret
    mirror = {"name": "mirror", "public": True, "proxy": {"endpoint": "upstream", "tag_ttl_seconds": 60}}
    call(admin, "POST", "/projects", 201, json=mirror)  # a proxy project (proxy_projects)
    hook = {  # a webhook policy, its secret and header sealed under signing-key-secret
        "name": "ci", "url": "https://hooks.invalid/in", "events": ["push", "quota_warning"],
        "secret": "webhook-secret-1", "headers": {"X-Token": "t"},
    }  # fmt: skip
    call(admin, "POST", "/projects/team/webhooks", 201, json=hook)
    with api(server, ALICE) as alice:
        personal_token = call(alice, "POST", "/me/tokens", 201, json={"name": "laptop"})["secret"]

    # Groups come from LDAP; here straight into the database, as a directory sync writes them.
    engine = create_engine(f"sqlite:///{server.datadir / 'dockyard.db'}")
    with engine.begin() as connection:
        group_id = connection.execute(
            insert(GroupRow).values(name="ops", source="ldap", created_at=_now()).returning(GroupRow.id)
        ).scalar_one()
        alice_id = connection.scalar(select(UserRow.id).where(UserRow.username == ALICE[0]))
        connection.execute(insert(UserGroupRow).values(user_id=alice_id, group_id=group_id))
        # A single sign-on login under way (the browser is at the provider), as POST /oidc/authorize
        # writes it; the provider itself is not configured here.
        connection.execute(
            insert(OIDCLoginStateRow).values(
                id="1" * 64,
                binding_hash="2" * 64,
                nonce="move-nonce",
                code_verifier="v" * 86,
                next_path="/ui/projects",
                expires_at=_now(),
            )
        )
        # A tag the proxy project cached (its upstream is not reachable here): the cache's state row.
        mirror_id = connection.scalar(select(ProjectRow.id).where(ProjectRow.name == "mirror"))
        repository_id = connection.execute(
            insert(Repository)
            .values(name="mirror/app", project_id=mirror_id, created_at=_now())
            .returning(Repository.id)
        ).scalar_one()
        connection.execute(
            insert(ProxyTagRow).values(
                repository_id=repository_id,
                tag="1.0",
                upstream_digest="sha256:" + "0" * 64,
                checked_at=_now(),
            )
        )
    engine.dispose()
    call(admin, "POST", "/projects/library/members", 201, json={"role": "guest", "group": "ops"})
    # The offline vulnerability database: an import (advisories, affected packages, the import log)
    # and an allowlist entry, with the commands an administrator runs.
    vulndb = Path(__file__).resolve().parents[1] / "data" / "vulndb"
    imported = dockyard("vulndb", "import", vulndb, "--config", server.config_path)
    assert imported.returncode == 0, imported.stderr
    allowed = dockyard(
        "vulndb", "allow", "CVE-2020-28493", "--project", "team", "--config", server.config_path
    )
    assert allowed.returncode == 0, allowed.stderr

    oci = registry_client(server, bearer(server, ADMIN, "team/app", "team/multi", "library/base", "team/py"))
    pushed: dict[tuple[str, str], bytes] = {}
    for repo, tag in (("team/app", "v1"), ("library/base", "3.19"), ("team/app", "release-1")):
        manifest = oci.push_image(repo, tag, seed=f"{repo}:{tag}")
        pushed[(repo, tag)] = manifest.body
    subject = oci.get_manifest("team/app", "v1").headers["Docker-Content-Digest"]
    children = []
    for architecture in ("amd64", "arm64"):
        config = json.dumps({"architecture": architecture, "os": "linux"}).encode()
        layer = os.urandom(256 * 1024)
        oci.push_blob("team/multi", config)
        oci.push_blob("team/multi", layer)
        body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
        child = oci.push_manifest("team/multi", digest_of(body), body, OCI_MANIFEST)
        children.append(child.descriptor(platform={"os": "linux", "architecture": architecture}))
        pushed[("team/multi", child.digest)] = body
    index = oci.push_manifest("team/multi", "latest", index_manifest(children), OCI_INDEX)
    pushed[("team/multi", "latest")] = index.body
    # A signature-like artifact that refers to team/app:v1.
    signature = b'{"signed": "team/app:v1"}'
    oci.push_blob("team/app", signature)
    referrer_body = image_manifest(
        empty_descriptor(),
        [descriptor("application/vnd.example.signature", signature)],
        artifact_type="application/vnd.example.signature",
        subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": len(pushed[("team/app", "v1")])},
    )
    oci.push_blob("team/app", b"{}")
    referrer = oci.push_manifest("team/app", digest_of(referrer_body), referrer_body, OCI_MANIFEST)
    pushed[("team/app", referrer.digest)] = referrer_body
    # A cosign signature of team/app:v1 (the .sig tag form), a key the project trusts, the verdict.
    key = make_key("ecdsa", server.datadir.parent, "cosign")
    call(
        admin,
        "POST",
        "/projects/team/signing-keys",
        201,
        json={"name": "release", "public_key": key.public_pem},
    )
    signed = payload(subject)
    layer = signature_layer(oci, "team/app", signed, key.sign(signed, server.datadir.parent))
    pushed[("team/app", subject.replace(":", "-") + ".sig")] = push_sig_tag(
        oci, "team/app", subject, [layer]
    ).body
    verdict = call(admin, "GET", "/repositories/team/app/artifacts/v1/signature", 200)
    assert verdict["status"] == "verified", verdict
    # A certificate in a named notation trust store, and the project's trust policy.
    release_ca = make_ca(server.datadir.parent, "release-ca")
    call(
        admin,
        "POST",
        "/projects/team/signing-keys",
        201,
        json={"name": "release-ca", "public_key": release_ca.pem, "trust_store": "acme"},
    )
    policy = {
        "name": "team",
        "registryScopes": ["*"],
        "signatureVerification": {"level": "permissive"},
        "trustStores": ["ca:acme"],
        "trustedIdentities": ["*"],
    }
    call(admin, "PUT", "/projects/team/trust-policy", 200, json={"version": "1.0", "trustPolicies": [policy]})
    # Sigstore keyless: a trusted root of the project and a system-wide one (sigstore_trust_roots), and
    # who may sign (sigstore_identities).
    trusted_root = json.loads(PrivateSigstore().trusted_root())
    call(admin, "PUT", "/projects/team/sigstore/trust-roots/private", 200, json=trusted_root)
    call(admin, "PUT", "/sigstore/trust-roots/corp", 200, json=trusted_root)
    actions = "https://token.actions.githubusercontent.com"
    identity = {"name": "ci", "issuer": actions, "san": "ci@example.com"}
    call(admin, "POST", "/projects/team/sigstore/identities", 201, json=identity)
    # A stored scan (scans, scan_findings) of an image with a Python package an advisory names, and
    # the project's scan settings (scan_settings).
    metadata = file("usr/lib/python3/dist-packages/Jinja2-2.11.2.dist-info/METADATA", JINJA2)
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    py_layer = tar_layer([metadata])
    for blob in (config, py_layer):
        oci.push_blob("team/py", blob)
    py_body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, py_layer)])
    pushed[("team/py", "1")] = oci.push_manifest("team/py", "1", py_body, OCI_MANIFEST).body
    call(admin, "PUT", "/projects/team/scan-settings", 200, json={"scan_on_push": True})
    scan = call(admin, "POST", "/repositories/team/py/artifacts/1/scan", 202)
    wait_for_job(admin, scan["job_id"])
    report = call(admin, "GET", "/repositories/team/py/artifacts/1/scan", 200)
    assert report["status"] == "done" and report["findings"], report
    # The layer browser's index of a layer read to its end (layer_file_indexes).
    listed = admin.get(
        f"/repositories/team/py/artifacts/1/layers/{digest_of(py_layer)}/files",
        params={"recursive": "true"},
    )
    assert listed.status_code == 200 and '"end"' in listed.text.splitlines()[-1], listed.text
    # An external scanner with a sealed secret (scanners).
    body = {"name": "adapter", "url": "https://scanner.example", "auth": "token", "secret": "scanner-s3cret"}
    call(admin, "POST", "/scanners", 201, json=body)
    location = oci.upload_location("team/app")
    assert oci.patch_chunk(location, b"u" * 70_000).status_code == 202  # an upload left unfinished
    oci.http.close()

    run = call(admin, "POST", "/projects/team/retention/run", 202, json={"dry_run": True})
    wait_for_job(admin, run["job_id"])
    # A replication policy and a run of it (replication_runs, replication_run_artifacts): team/py to
    # the endpoint, which never resolves, so its artifact fails and the job waits for its retry.
    policy = {"name": "dr", "direction": "push", "endpoint": "upstream", "repositories": "team/py"}
    call(admin, "POST", "/replication/policies", 201, json=policy)
    replicate = call(admin, "POST", "/replication/policies/dr/run", 202)
    deadline = time.monotonic() + 60
    while not (runs := call(admin, "GET", f"/replication/runs?job_id={replicate['job_id']}", 200)) or (
        not call(admin, "GET", f"/replication/runs/{runs[0]['id']}", 200)["artifacts"]
    ):
        assert time.monotonic() < deadline, "the replication run recorded no artifact"
        time.sleep(0.2)
    call(admin, "POST", f"/replication/runs/{runs[0]['id']}/cancel", 202)
    login = httpx.post(
        f"{server.url}/api/v1/login", json={"username": ALICE[0], "password": ALICE[1]}, timeout=HTTP_TIMEOUT
    )
    assert login.status_code == 200, describe(login)
    install = Install(
        pushed=pushed,
        robot=(robot["name"], robot["secret"]),
        personal_token=personal_token,
        alice_token=bearer(server, ALICE, "team/app", actions="pull"),
        session_cookie=login.cookies["dockyard_session"],
        csrf_token=login.json()["csrf_token"],
        upload_location=location,
        upload_size=70_000,
        referrer_subject=subject,
        referrer_digest=referrer.digest,
    )
    install.settings_seen = settings_seen(admin)
    admin.close()
    return install


JINJA2 = b"Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.11.2\n"


def settings_seen(admin: httpx.Client) -> dict[str, Any]:
    """What the management API shows of the install's settings (not the counters pushes move)."""
    quota = call(admin, "GET", "/projects/team/quota", 200)
    return {
        "quota": {key: quota[key] for key in ("limit_bytes", "warn_percent")},
        "retention": call(admin, "GET", "/projects/team/retention", 200),
        "immutable": call(admin, "GET", "/projects/team/immutable-rules", 200),
        "members": call(admin, "GET", "/projects/team/members", 200),
        "library members": call(admin, "GET", "/projects/library/members", 200),
        "robots": call(admin, "GET", "/projects/team/robots", 200),
        "users": sorted(user["username"] for user in call(admin, "GET", "/users", 200)),
        "schedule": call(admin, "GET", "/jobs/schedules/gc", 200)["cron"],
        "endpoints": call(admin, "GET", "/endpoints", 200),
        "proxy": call(admin, "GET", "/projects/mirror", 200)["proxy"],
        "webhooks": call(admin, "GET", "/projects/team/webhooks", 200),
        "replication": call(admin, "GET", "/replication/policies", 200),
        "runs": len(call(admin, "GET", "/projects/team/retention/runs", 200)),
        "scan settings": call(admin, "GET", "/projects/team/scan-settings", 200),
        "scan": call(admin, "GET", "/repositories/team/py/artifacts/1/scan", 200),
    }


def _now() -> Any:
    from dockyard.db.base import utcnow

    return utcnow()


# --- a client pushing all along -----------------------------------------------------------------
@dataclass
class Push:
    tag: str
    started: float
    status: int  # 201, or the status of the request that was refused
    body: bytes = b""
    codes: list[str] = field(default_factory=list)
    message: str = ""


class Pusher(threading.Thread):
    """Pushes small images to team/during, one after another, and records how each ended."""

    def __init__(self, server: RunningServer, robot: tuple[str, str]) -> None:
        super().__init__(daemon=True)
        self.oci = registry_client(server, bearer(server, robot, "team/during"))
        self.pushes: list[Push] = []
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            number = 0
            # Once told to stop, it goes on until a push is refused: the window is over by then.
            while not (self.stop.is_set() and any(push.status != 201 for push in self.pushes)):
                number += 1
                self.pushes.append(self._push(f"during-{number}"))
                time.sleep(0.02)
        except BaseException as exc:
            self.failure = exc
        finally:
            self.oci.http.close()

    def _push(self, tag: str) -> Push:
        started = time.monotonic()
        config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
        layer = f"layer {tag} ".encode() * 100
        for blob in (config, layer):
            start = self.oci.start_upload("team/during")
            if start.status_code != 202:
                return self._refused(tag, started, start)
            done = self.oci.finish_upload(start.headers["Location"], digest_of(blob), blob)
            if done.status_code != 201:
                return self._refused(tag, started, done)
        body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
        answer = self.oci.put_manifest("team/during", tag, body, OCI_MANIFEST)
        if answer.status_code != 201:
            return self._refused(tag, started, answer)
        return Push(tag, started, 201, body)

    @staticmethod
    def _refused(tag: str, started: float, response: httpx.Response) -> Push:
        message = json.loads(response.content)["errors"][0]["message"] if response.content else ""
        return Push(tag, started, response.status_code, codes=error_codes(response), message=message)


# --- the move ---------------------------------------------------------------------------------
def test_a_running_registry_moves_onto_postgresql_and_s3_and_serves_the_same_from_there(
    make_server: Callable[..., RunningServer],
    postgres: PostgresCluster,
    seaweedfs: RunningSeaweedFS,
    tmp_path: Path,
) -> None:
    source = make_server(source_config(tmp_path / "old"), env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})
    install = populate(source)
    source_engine = build_engine(f"sqlite:///{tmp_path / 'old' / 'dockyard.db'}")
    deadline = time.monotonic() + 15
    while True:  # the audit log writes its queue every second, pull counts every 5 s
        with source_engine.connect() as connection:
            counts = row_counts(connection, model_tables())
        empty = sorted(name for name, count in counts.items() if not count)
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not empty, f"the install must put rows in every table; add a step that fills: {empty}"

    target_url = postgres.create_database("moved")
    storage = s3_storage_file(tmp_path / "s3.yml", seaweedfs, "/moved")
    move = ["move", "--config", source.config_path, "--to-storage", storage]
    env = {"DOCKYARD_MOVE_TO_DATABASE": plain_url(target_url)}  # the password stays off the command line

    # The day before: blobs only, twice; the second run finds them all there.
    first = dockyard(*move, "--blobs-only", env=env)
    assert first.returncode == 0, first.stderr
    blobs = counts["blobs"]
    assert f"copied {blobs} of {blobs} blobs" in first.stdout
    again = dockyard(*move, "--blobs-only", env=env)
    assert again.returncode == 0, again.stderr
    assert f"copied 0 of {blobs} blobs" in again.stdout

    # New content since, big enough that copying it takes a while with the pusher going.
    big_layer = os.urandom(16 * 1024 * 1024)
    oci = registry_client(source, bearer(source, ADMIN, "team/big"))
    big_config = b'{"architecture": "amd64", "os": "linux", "big": true}'
    oci.push_blob("team/big", big_config)
    oci.push_blob("team/big", big_layer)
    big_body = image_manifest(descriptor(OCI_CONFIG, big_config), [descriptor(OCI_LAYER, big_layer)])
    install.pushed[("team/big", "v1")] = oci.push_manifest("team/big", "v1", big_body, OCI_MANIFEST).body
    oci.http.close()
    del big_layer

    pusher = Pusher(source, install.robot)
    pusher.start()
    time.sleep(0.3)
    move_started = time.monotonic()
    new_config = tmp_path / "new.yml"
    moved = dockyard(*move, "--write-config", new_config, env=env)
    pusher.stop.set()
    pusher.join(120)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "read-only now" in moved.stdout
    assert "postgresql://dockyard@127.0.0.1" in moved.stdout  # what to change, password-free
    # The upload left unfinished, and any the pusher had started when the window refused its PUT.
    carried = re.search(r"(\d+) unfinished uploads carried over, 0 dropped", moved.stdout)
    assert carried and int(carried.group(1)) >= 1, moved.stdout
    assert pusher.failure is None, pusher.failure

    # Every push either got its 201 (then it is in the target, below) or was refused clearly.
    landed = [push for push in pusher.pushes if push.status == 201]
    refused = [push for push in pusher.pushes if push.status != 201]
    for push in refused:
        assert (push.status, push.codes) == (405, ["UNSUPPORTED"]), push
        assert READ_ONLY_MESSAGE in push.message
    assert [push for push in landed if push.started > move_started], "no push landed during the move"
    assert refused
    for push in landed:
        install.pushed[("team/during", push.tag)] = push.body

    # The old server: still pulls, refuses writes on every worker, management writes included.
    old = registry_client(source, bearer(source, ALICE, "library/base", actions="pull"))
    assert old.get_manifest("library/base", "3.19").content == install.pushed[("library/base", "3.19")]
    old.http.close()
    with api(source) as admin:
        refusal = admin.post("/users", json={"username": "late", "password": "late-password-0123"})
        assert refusal.status_code == 412 and READ_ONLY_MESSAGE in refusal.text, describe(refusal)

    # The target holds exactly the source's rows, table by table.
    target_engine = build_engine(target_url)
    with source_engine.connect() as old_rows, target_engine.connect() as new_rows:
        expected, copied = dump_tables(old_rows), dump_tables(new_rows)
        assert copied.keys() == expected.keys()
        for table in expected:
            assert copied[table] == expected[table], f"table {table} differs"
    source_engine.dispose()

    again = dockyard(*move, env=env)  # a second move of the same registry
    assert again.returncode == 1
    assert "read-only already" in again.stderr
    source.stop()

    # --- the new config, on a new node (its own datadir) --------------------------------------
    config = yaml.safe_load(new_config.read_text())
    assert config["database"]["url"] == plain_url(target_url)
    assert config["storage"]["s3"]["rootdirectory"] == "/moved"
    assert oct(new_config.stat().st_mode & 0o777) == "0o600"
    config["datadir"] = str(tmp_path / "node-2")
    config.pop("http")  # a port of its own
    (tmp_path / "node-2").mkdir()
    for secret in ("session-secret", "signing-key-secret"):  # as the report says
        assert f"{tmp_path / 'old' / secret}" in moved.stdout
        shutil.copy(tmp_path / "old" / secret, tmp_path / "node-2" / secret)
    new = make_server(config)
    try:
        check_the_same_registry(new, install)
    finally:
        target_engine.dispose()
    verified = dockyard("verify", "--deep", "--config", new.config_path)
    assert verified.returncode == 0, verified.stderr


def check_the_same_registry(server: RunningServer, install: Install) -> None:
    # Every image bit for bit, and the pushes that landed during the move.
    repositories = sorted({repo for repo, _ in install.pushed})
    oci = registry_client(server, bearer(server, ADMIN, *repositories, actions="pull"))
    for (repo, reference), body in install.pushed.items():
        response = oci.get_manifest(repo, reference)
        assert response.status_code == 200 and response.content == body, (repo, reference)
        for blob in [json.loads(body).get("config"), *json.loads(body).get("layers", [])]:
            if blob:
                got = oci.http.get(f"/v2/{repo}/blobs/{blob['digest']}")
                assert got.status_code == 200 and digest_of(got.content) == blob["digest"], blob
    referrers = oci.http.get(f"/v2/team/app/referrers/{install.referrer_subject}")
    assert referrers.status_code == 200, describe(referrers)
    assert [m["digest"] for m in referrers.json()["manifests"]] == [install.referrer_digest]
    oci.http.close()

    # The old server's token, signed with the key the move carried over.
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        answer = http.get(
            "/v2/team/app/manifests/v1",
            headers={"Authorization": f"Bearer {install.alice_token}", "Accept": OCI_MANIFEST},
        )
        assert answer.status_code == 200, describe(answer)
    # The management session alice signed in to before the move.
    with httpx.Client(
        base_url=server.url, cookies={"dockyard_session": install.session_cookie}, timeout=HTTP_TIMEOUT
    ) as browser:
        me = browser.get("/api/v1/me")
        assert me.status_code == 200 and me.json()["name"] == ALICE[0], describe(me)
    # Passwords, a personal token, the robot's secret.
    for credentials in (ALICE, (ALICE[0], install.personal_token)):
        with api(server, credentials) as alice:
            assert call(alice, "GET", "/me", 200)["name"] == ALICE[0]
    robot = registry_client(server, bearer(server, install.robot, "team/app", actions="pull"))
    assert robot.get_manifest("team/app", "v1").status_code == 200
    robot.http.close()
    with api(server) as admin:
        assert settings_seen(admin) == install.settings_seen
        # New rows get new ids: the sequences were moved past the copied ones.
        call(admin, "POST", "/users", 201, json={"username": "bob", "password": "bob-password-0123"})
        call(admin, "POST", "/projects", 201, json={"name": "fresh", "public": False})
    # The unfinished upload goes on where it stopped, and pushes work again.
    oci = registry_client(server, bearer(server, ADMIN, "team/app", "team/after"))
    resumed = oci.patch_chunk(install.upload_location, b"v" * 10, start=install.upload_size)
    assert resumed.status_code == 202, describe(resumed)
    assert resumed.headers["Range"] == f"0-{install.upload_size + 9}"
    oci.push_image("team/after", "v1", seed="after the move")
    oci.http.close()


# --- a move that fails in its window --------------------------------------------------------------
def test_a_move_that_fails_in_its_window_leaves_the_registry_as_it_was(
    make_server: Callable[..., RunningServer], postgres: PostgresCluster, tmp_path: Path
) -> None:
    config = source_config(tmp_path / "old", jobs={"run_in_serve": False})
    source = make_server(config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})
    # SQLite keeps a name longer than its column allows; PostgreSQL refuses it: the copy fails late.
    engine = create_engine(f"sqlite:///{tmp_path / 'old' / 'dockyard.db'}")
    with engine.begin() as connection:
        connection.execute(insert(GroupRow).values(name="g" * 600, source="ldap", created_at=_now()))
    engine.dispose()
    target_url = postgres.create_database("failed")

    failed = dockyard("move", "--config", source.config_path, "--to-database", plain_url(target_url))

    assert failed.returncode == 1
    assert "copying table groups failed" in failed.stderr and "too long" in failed.stderr, failed.stderr
    status = dockyard("read-only", "status", "--config", source.config_path)
    assert status.stdout.strip() == "writable"
    with api(source) as admin:  # writes work again
        call(admin, "POST", "/projects", 201, json={"name": "still-here", "public": False})
    target = build_engine(target_url)
    with target.connect() as connection:
        assert not any(row_counts(connection, model_tables()).values())  # rolled back: empty
        assert connection.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    target.dispose()


# --- the switch on its own ----------------------------------------------------------------------
JOB_POLL_SECONDS = 0.25


def test_the_read_only_switch_holds_on_every_worker_and_across_a_restart(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    config = {
        "datadir": str(tmp_path / "data"),
        "http": {"workers": 2},
        "jobs": {"run_in_serve": True, "poll_interval": f"{JOB_POLL_SECONDS}s"},
    }
    server = make_server(config)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        pushed = OCIClient(http).push_image("ops/app", "v1")

    on = dockyard("read-only", "on", "--reason", "disk swap", "--config", server.config_path)
    assert on.returncode == 0, on.stderr
    for _ in range(6):  # new connections: either worker answers
        with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
            oci = OCIClient(http)
            refused = oci.start_upload("ops/app")
            assert refused.status_code == 405 and error_codes(refused) == ["UNSUPPORTED"], describe(refused)
            delete = http.delete(f"/v2/ops/app/manifests/{pushed.digest}")
            assert delete.status_code == 405 and READ_ONLY_MESSAGE in delete.text
            assert oci.get_manifest("ops/app", "v1").content == pushed.body
    status = dockyard("read-only", "--config", server.config_path)
    assert "read-only since" in status.stdout and "disk swap" in status.stdout
    # The job runner (its worker starts after the HTTP workers: often after the switch) looks at the
    # switch once a poll interval: once it runs, let it make a round or two in read-only.
    deadline = time.monotonic() + 60
    while "job runner on" not in server.log():
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.05)
    time.sleep(2 * JOB_POLL_SECONDS)
    # Stopping has every background writer write what it holds (the audit writer, the pull counter
    # and the pull recorder: the pulls above), each refused by the switch. They give up quietly, as
    # they do each interval while it is on: no traceback, no warning per attempt, no job worker dying.
    server.stop()
    log = server.log()
    assert "Traceback" not in log and "will retry" not in log and "job worker exited" not in log, log[-3000:]

    # The old config restarted: still read-only, and it says so.
    again = make_server(config)
    assert "read-only since" in again.log() and "disk swap" in again.log()
    with httpx.Client(base_url=again.url, timeout=HTTP_TIMEOUT) as http:
        assert OCIClient(http).start_upload("ops/app").status_code == 405

    off = dockyard("read-only", "off", "--config", again.config_path)
    assert off.returncode == 0 and "writable again" in off.stdout
    with httpx.Client(base_url=again.url, timeout=HTTP_TIMEOUT) as http:
        OCIClient(http).push_image("ops/app", "v2")
    log = again.log()  # its job worker started while the switch was on, and lived
    assert "Traceback" not in log and "job worker exited" not in log, log[-3000:]
