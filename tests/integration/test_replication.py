"""Replication with real peers on loopback: a real `dockyard serve` (its job runner runs the `replicate`
jobs) and Debian's docker-registry behind htpasswd as the endpoint, reached through a counting front
(tests/support/fronts.py) that can slow blobs down. Both directions, with filters and a namespace
rewrite; every replicated image is read back from the other side bit for bit (same digests, same
bytes); a second run copies nothing; a multi-arch index goes with its children, a signature with its
subject; a run cancelled midway stops, and the next run copies only what had not arrived."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_cli import Cli
from tests.integration.test_jobs import job_worker_children
from tests.support.fronts import Front, running_front
from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    PushedManifest,
    bearer_client,
    descriptor,
    image_manifest,
    index_manifest,
)
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "replication-tests-admin-password-1")
USER = ("replicator", "registry2-replication-password")
CONFIG = {
    "auth": {"enabled": True},
    "upstream": {"allowed_networks": ["127.0.0.0/8"], "total_timeout": "10s", "read_timeout": "5s"},
    # A short lease: a job whose worker was killed runs again within seconds.
    "jobs": {"run_in_serve": True, "poll_interval": "200ms", "lease": "2s"},
    # The HTTP workers read the event policies at every tag push: a policy applies from the next push.
    "replication": {"event_policies_ttl": "0s"},
}
API = "/api/v1"
# The slowed runs (cancelled, worker killed) copy this many artifacts at once rather than the engine's
# default (CONCURRENCY, 8): what a run has in flight, done and not started is the same at four times as
# many images, and each test pushes and copies 8 images instead of 24.
SLOW_CONCURRENCY = 2
SLOW_IMAGES = 4 * SLOW_CONCURRENCY
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX))


@dataclass
class Image:
    manifest: bytes
    digest: str
    media_type: str
    blobs: dict[str, bytes]


def make_image(seed: str, layer_size: int = 64 << 10, layers: int = 1) -> tuple[bytes, dict[str, bytes]]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    blobs = {_digest(config): config}
    descriptors = []
    for n in range(layers):
        block = hashlib.sha256(f"{seed}/{n}".encode()).digest()
        layer = (block * (layer_size // len(block) + 1))[:layer_size]
        blobs[_digest(layer)] = layer
        descriptors.append(descriptor(OCI_LAYER, layer))
    return image_manifest(descriptor(OCI_CONFIG, config), descriptors), blobs


def push_image(client: OCIClient, repository: str, tag: str | None, seed: str, **kw: Any) -> Image:
    manifest, blobs = make_image(seed, **kw)
    for data in blobs.values():
        client.push_blob(repository, data)
    pushed = client.push_manifest(repository, tag or _digest(manifest), manifest, OCI_MANIFEST)
    return Image(manifest, pushed.digest, OCI_MANIFEST, blobs)


def push_signature(client: OCIClient, repository: str, image: Image) -> PushedManifest:
    """A cosign signature of `image` in the OCI 1.1 form: an artifact whose subject is the image."""
    payload = b'{"critical":{"image":{"docker-manifest-digest":"' + image.digest.encode() + b'"}}}'
    client.push_blob(repository, payload)
    client.push_blob(repository, b"{}")
    signature = image_manifest(
        {"mediaType": "application/vnd.oci.empty.v1+json", "digest": _digest(b"{}"), "size": 2},
        [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", payload)],
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        subject={"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)},
    )
    return client.push_manifest(repository, _digest(signature), signature, OCI_MANIFEST)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_same(http: httpx.Client, repository: str, reference: str, image: Image) -> None:
    """The image as the other side serves it: the same manifest bytes and digest, every blob the same."""
    answer = http.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT})
    assert answer.status_code == 200, f"{repository}:{reference}: {answer.status_code} {answer.text[:200]}"
    assert answer.content == image.manifest
    assert answer.headers["docker-content-digest"] == image.digest
    for digest, data in image.blobs.items():
        blob = http.get(f"/v2/{repository}/blobs/{digest}")
        assert blob.status_code == 200, f"{repository}@{digest}: {blob.status_code}"
        assert blob.content == data


# --- the peers ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("replication-remote"), USER) as url:
        yield url


@pytest.fixture(scope="module")
def front(remote: str) -> Iterator[Front]:
    with running_front(remote) as running:
        running.keep_host = True  # upload Locations name the front, where the credentials go
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("replication-server"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: RunningServer, front: Front) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
        answer = client.post("/endpoints", json={"name": "dr", "url": front.url, "credentials": credentials})
        assert answer.status_code == 201, answer.text
        for project in ("team", "pulled", "slow", "resumed"):
            assert client.post("/projects", json={"name": project}).status_code == 201
        yield client


@pytest.fixture
def remote_http(remote: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=remote, auth=USER, timeout=HTTP_TIMEOUT) as http:
        yield http


def local_http(server: RunningServer, *repositories: str) -> httpx.Client:
    return bearer_client(server.url, ADMIN, repositories)


def run_policy(api: httpx.Client, name: str, timeout: float = 120) -> dict[str, Any]:
    """Queue a run and wait for its job to finish; the run's record with its artifacts."""
    answer = api.post(f"/replication/policies/{name}/run")
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    job = wait_for_job(api, job_id, timeout)
    runs = api.get("/replication/runs", params={"job_id": job_id}).json()
    assert runs, f"job {job_id} made no run: {job}"
    run: dict[str, Any] = api.get(f"/replication/runs/{runs[0]['id']}").json()
    return run


def wait_for_job(api: httpx.Client, job_id: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def create_policy(api: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = api.post("/replication/policies", json={"endpoint": "dr", **body})
    assert answer.status_code == 201, answer.text
    policy: dict[str, Any] = answer.json()
    return policy


# --- push: local -> the endpoint ----------------------------------------------------------------------
def test_push_with_filters_rewrite_index_and_referrers(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client, front: Front
) -> None:
    with local_http(server, "team/app", "team/web/site", "team/other") as http:
        local = OCIClient(http)
        app1 = push_image(local, "team/app", "1.0", "app-1.0")
        push_image(local, "team/app", "2.0", "app-2.0")  # not selected by the tag filter
        site = push_image(local, "team/web/site", "1.1", "site-1.1", layers=3)
        push_image(local, "team/other", "1.0", "other-1.0")  # not selected by the repository filter
        # A multi-arch index: two children, each with its blobs, pushed by digest.
        arm = push_image(local, "team/app", None, "app-arm")
        amd = push_image(local, "team/app", None, "app-amd")
        index = index_manifest(
            [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": arm.digest,
                    "size": len(arm.manifest),
                    "platform": {"architecture": "arm64", "os": "linux"},
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": amd.digest,
                    "size": len(amd.manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
            ]
        )
        local.push_manifest("team/app", "1.2-multi", index, OCI_INDEX)
        # A signature of app:1.0 (an artifact whose subject is it): found through the referrers API.
        signed = push_signature(local, "team/app", app1)

    create_policy(
        api,
        name="to-dr",
        direction="push",
        repositories="team/{app,web/**}",
        tags="1.*",
        dest_namespace="mirror",
    )
    run = run_policy(api, "to-dr")
    assert run["status"] == "succeeded", json.dumps(run, indent=1)
    by_source = {item["source"]: item for item in run["artifacts"]}
    assert set(by_source) == {"team/app:1.0", "team/app:1.2-multi", "team/web/site:1.1"}
    assert by_source["team/web/site:1.1"]["destination"] == "mirror/web/site:1.1"
    assert all(item["status"] == "copied" for item in run["artifacts"])
    counters = run["counters"]
    assert counters["artifacts_copied"] == 3 and counters["artifacts_failed"] == 0
    assert counters["bytes_copied"] > 0

    assert_same(remote_http, "mirror/app", "1.0", app1)
    assert_same(remote_http, "mirror/web/site", "1.1", site)
    for child in (arm, amd):
        assert_same(remote_http, "mirror/app", child.digest, child)
    got = remote_http.get("/v2/mirror/app/manifests/1.2-multi", headers={"Accept": ACCEPT})
    assert got.content == index and got.headers["docker-content-digest"] == _digest(index)
    got = remote_http.get(f"/v2/mirror/app/manifests/{signed.digest}", headers={"Accept": ACCEPT})
    assert got.status_code == 200 and got.content == signed.body
    tags = remote_http.get("/v2/mirror/app/tags/list").json()["tags"]
    assert sorted(tags) == ["1.0", "1.2-multi"]
    assert remote_http.get("/v2/team/other/tags/list").status_code == 404
    assert remote_http.get("/v2/mirror/other/tags/list").status_code == 404

    # Again: nothing is copied, and the destination is only asked (HEADs), never sent a blob.
    front.reset()
    again = run_policy(api, "to-dr")
    assert again["status"] == "succeeded", again
    assert again["counters"]["artifacts_copied"] == 0
    assert again["counters"]["bytes_copied"] == 0 and again["counters"]["blobs_copied"] == 0
    assert again["counters"]["artifacts_skipped"] == 3
    assert front.count("PUT", "upload") == 0 and front.count("PUT", "manifest") == 0


def test_push_keeps_or_overrides_a_changed_tag(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client
) -> None:
    with local_http(server, "team/keep") as http:
        first = push_image(OCIClient(http), "team/keep", "latest", "keep-1")
    create_policy(api, name="keep-tags", direction="push", repositories="team/keep", override=False)
    assert run_policy(api, "keep-tags")["status"] == "succeeded"
    assert_same(remote_http, "team/keep", "latest", first)
    with local_http(server, "team/keep") as http:
        second = push_image(OCIClient(http), "team/keep", "latest", "keep-2")
    kept = run_policy(api, "keep-tags")
    assert kept["artifacts"][0]["status"] == "skipped" and "kept" in kept["artifacts"][0]["error"]
    assert_same(remote_http, "team/keep", "latest", first)  # override off: the destination's tag stays
    assert api.patch("/replication/policies/keep-tags", json={"override": True}).status_code == 200
    assert run_policy(api, "keep-tags")["counters"]["artifacts_copied"] == 1
    assert_same(remote_http, "team/keep", "latest", second)


# --- pull: the endpoint -> local -----------------------------------------------------------------------
def test_pull_with_filters_and_rewrite(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client
) -> None:
    upstream = OCIClient(remote_http)
    base = push_image(upstream, "vendor/base", "3.20", "base-3.20", layers=2)
    push_image(upstream, "vendor/base", "edge", "base-edge")  # not selected
    tool = push_image(upstream, "vendor/tools/cli", "3.20", "cli-3.20")
    push_image(upstream, "elsewhere/x", "3.20", "x")  # not selected
    create_policy(
        api, name="from-dr", direction="pull", repositories="vendor/**", tags="3.*", dest_namespace="pulled"
    )
    run = run_policy(api, "from-dr")
    assert run["status"] == "succeeded", json.dumps(run, indent=1)
    assert sorted(item["destination"] for item in run["artifacts"]) == [
        "pulled/base:3.20",
        "pulled/tools/cli:3.20",
    ]
    with local_http(server, "pulled/base", "pulled/tools/cli", "pulled/x") as http:
        assert_same(http, "pulled/base", "3.20", base)
        assert_same(http, "pulled/tools/cli", "3.20", tool)
        assert http.get("/v2/pulled/base/tags/list").json()["tags"] == ["3.20"]
    again = run_policy(api, "from-dr")
    assert again["counters"]["artifacts_copied"] == 0 and again["counters"]["bytes_copied"] == 0


def test_propagate_deletes(server: RunningServer, api: httpx.Client, remote_http: httpx.Client) -> None:
    upstream = OCIClient(remote_http)
    push_image(upstream, "gone/app", "1", "gone-1")
    two = push_image(upstream, "gone/app", "2", "gone-2")
    create_policy(
        api,
        name="mirror-gone",
        direction="pull",
        repositories="gone/**",
        dest_namespace="pulled",
        propagate_deletes=True,
    )
    assert run_policy(api, "mirror-gone")["counters"]["artifacts_copied"] == 2
    one = remote_http.head("/v2/gone/app/manifests/1", headers={"Accept": ACCEPT})
    assert (
        remote_http.delete(f"/v2/gone/app/manifests/{one.headers['docker-content-digest']}").status_code
        == 202
    )
    run = run_policy(api, "mirror-gone")
    assert {item["destination"]: item["status"] for item in run["artifacts"]} == {
        "pulled/app:2": "skipped",
        "pulled/app:1": "deleted",
    }
    with local_http(server, "pulled/app") as http:
        assert http.get("/v2/pulled/app/tags/list").json()["tags"] == ["2"]
        assert_same(http, "pulled/app", "2", two)


# --- cancel, and the run after it -----------------------------------------------------------------------
def test_cancel_mid_run_then_rerun_copies_only_the_rest(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client, front: Front
) -> None:
    upstream = OCIClient(remote_http)
    # Four times as many as the run copies at once, so a cancel comes while some are not started.
    images = {f"v{n}": push_image(upstream, "big/app", f"v{n}", f"big-{n}") for n in range(SLOW_IMAGES)}
    create_policy(api, name="slow-pull", direction="pull", repositories="big/**", dest_namespace="slow",
                  concurrency=SLOW_CONCURRENCY)  # fmt: skip
    front.reset()
    front.blob_delay = 0.5  # two blobs an image: about a second each
    try:
        queued = api.post("/replication/policies/slow-pull/run").json()
        run_id = _wait_for_run_with_artifacts(api, queued["job_id"], at_least=2)
        answer = api.post(f"/replication/runs/{run_id}/cancel")
        assert answer.status_code == 202, answer.text
        job = wait_for_job(api, queued["job_id"], 60)
    finally:
        front.reset()
    assert job["status"] == "cancelled", job
    cancelled = api.get(f"/replication/runs/{run_id}").json()
    assert cancelled["status"] == "cancelled"
    arrived = cancelled["counters"]["artifacts_copied"]
    assert 2 <= arrived < len(images), cancelled
    assert api.post(f"/replication/runs/{run_id}/cancel").status_code == 409  # finished: nothing to stop

    rerun = run_policy(api, "slow-pull")
    assert rerun["status"] == "succeeded", rerun
    assert rerun["counters"]["artifacts_copied"] == len(images) - arrived
    assert rerun["counters"]["artifacts_skipped"] == arrived
    with local_http(server, "slow/app") as http:
        for tag, image in images.items():
            assert_same(http, "slow/app", tag, image)


def _wait_for_run_with_artifacts(api: httpx.Client, job_id: int, at_least: int) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = api.get("/replication/runs", params={"job_id": job_id}).json()
        if runs:
            detail = api.get(f"/replication/runs/{runs[0]['id']}").json()
            if len(detail["artifacts"]) >= at_least:
                return int(runs[0]["id"])
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} recorded fewer than {at_least} artifacts in time")


# --- the API's edges -----------------------------------------------------------------------------------
def test_policy_api_refuses_bad_input_and_audits(api: httpx.Client) -> None:
    base = {"name": "bad", "direction": "push", "endpoint": "dr"}
    assert api.post("/replication/policies", json={**base, "tags": "{a"}).status_code == 400
    assert api.post("/replication/policies", json={**base, "dest_namespace": "Up/Per"}).status_code == 400
    assert api.post("/replication/policies", json={**base, "trigger": "cron"}).status_code == 400
    assert (
        api.post(
            "/replication/policies", json={**base, "trigger": "cron", "schedule": "61 * * * *"}
        ).status_code
        == 400
    )
    assert (
        api.post("/replication/policies", json={**base, "direction": "pull", "trigger": "event"}).status_code
        == 400
    )
    assert api.post("/replication/policies", json={**base, "endpoint": "nope"}).status_code == 404
    assert api.post("/replication/policies", json={**base, "direction": "sideways"}).status_code == 400
    for limits in ({"concurrency": 0}, {"concurrency": 33}, {"bandwidth": 1000}):
        refused = api.post("/replication/policies", json={**base, **limits})
        assert refused.status_code == 400, refused.text
        assert next(iter(limits)) in refused.json()["errors"][0]["message"], refused.text
    created = api.post("/replication/policies", json={**base, "concurrency": 2, "bandwidth": 1 << 20})
    assert created.status_code == 201 and (created.json()["concurrency"], created.json()["bandwidth"]) == (
        2,
        1 << 20,
    )
    unlimited = api.patch("/replication/policies/bad", json={"bandwidth": None, "concurrency": 4})
    assert (unlimited.json()["concurrency"], unlimited.json()["bandwidth"]) == (4, None), unlimited.text
    assert api.delete("/replication/policies/bad").status_code == 204
    assert api.post("/replication/policies", json=base).status_code == 201
    assert api.post("/replication/policies", json=base).status_code == 409
    assert api.delete("/endpoints/dr").status_code == 409  # in use by policies
    assert api.delete("/replication/policies/bad").status_code == 204
    assert api.get("/replication/policies/bad").status_code == 404
    assert api.get("/replication/runs/999999").status_code == 404
    deadline = time.monotonic() + 10  # the audit log writes in batches
    while True:
        params = {"resource_type": "replication_policy", "resource_name": "bad"}
        actions = {event["action"] for event in api.get("/audit", params=params).json()}
        if actions >= {"create", "delete"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert actions >= {"create", "delete"}


# --- the CLI -------------------------------------------------------------------------------------------
# The CLI over HTTP only: its routes' database work runs on PostgreSQL in this module's API tests; the
# SQLite pass alone runs it (tests/conftest.py).
@pytest.mark.db_independent
def test_cli_policy_run_runs_show(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client, tmp_path: Path
) -> None:
    admin = Cli(tmp_path / "home")
    admin.home.mkdir()
    admin.login(server.url, "admin", ADMIN[1])
    with local_http(server, "team/cli") as http:
        image = push_image(OCIClient(http), "team/cli", "v1", "cli-v1")
    created = admin.json(
        "replication", "policy", "create", "by-cli", "-d", "push", "-e", "dr", "-r", "team/cli", "-t", "v*",
        "--dest-namespace", "fromcli",
    )  # fmt: skip
    assert (created["direction"], created["dest_namespace"]) == ("push", "fromcli")
    assert "by-cli" in admin.ok("replication", "policy", "list")
    assert "team/cli" in admin.ok("replication", "policy", "show", "by-cli")
    assert admin.json("replication", "policy", "update", "by-cli", "--keep")["override"] is False

    shown = admin.ok("replication", "run", "by-cli", "--wait")
    assert "fromcli/cli:v1" in shown and "copied" in shown
    assert_same(remote_http, "fromcli/cli", "v1", image)
    runs = admin.json("replication", "runs", "--policy", "by-cli")
    assert runs[0]["counters"]["artifacts_copied"] == 1
    detail = admin.json("replication", "show", str(runs[0]["id"]))
    assert detail["artifacts"][0]["digest"] == image.digest
    assert "nothing to stop" in admin.fails("replication", "cancel", str(runs[0]["id"]))
    assert "needs --direction" in admin.fails("replication", "policy", "create", "x")
    admin.ok("replication", "policy", "delete", "by-cli", "--yes")
    assert "no replication policy named" in admin.fails("replication", "policy", "show", "by-cli")


# --- triggers ------------------------------------------------------------------------------------------
def test_event_trigger_replicates_a_pushed_tag(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client
) -> None:
    create_policy(
        api, name="on-push", direction="push", repositories="team/evt/**", tags="v*", trigger="event"
    )
    with local_http(server, "team/evt/app", "team/other-evt") as http:
        local = OCIClient(http)
        image = push_image(local, "team/evt/app", "v1", "evt-v1")
        push_image(local, "team/evt/app", "latest", "evt-latest")  # the tag filter does not select it
        push_image(local, "team/other-evt", "v1", "other-evt")  # nor the repository filter this
    deadline = time.monotonic() + 60
    while remote_http.head("/v2/team/evt/app/manifests/v1", headers={"Accept": ACCEPT}).status_code != 200:
        assert time.monotonic() < deadline, "the push was not replicated"
        time.sleep(0.2)
    assert_same(remote_http, "team/evt/app", "v1", image)
    runs = api.get("/replication/runs", params={"policy": "on-push"}).json()
    assert [run["trigger"] for run in runs] == ["event"]  # one run: the one tag the filters select
    run = api.get(f"/replication/runs/{runs[0]['id']}").json()
    assert [item["source"] for item in run["artifacts"]] == ["team/evt/app:v1"]
    assert remote_http.head("/v2/team/evt/app/manifests/latest").status_code == 404
    assert remote_http.get("/v2/team/other-evt/tags/list").status_code == 404

    # A tag added through the management API (the portal's "add tag") is a push like any other.
    assert api.put("/repositories/team/evt/app/tags/v2", json={"digest": image.digest}).status_code == 201
    deadline = time.monotonic() + 60
    while remote_http.head("/v2/team/evt/app/manifests/v2", headers={"Accept": ACCEPT}).status_code != 200:
        assert time.monotonic() < deadline, "the tag set through the API was not replicated"
        time.sleep(0.2)
    assert_same(remote_http, "team/evt/app", "v2", image)


def test_cron_trigger_runs_from_the_kinds_sweep(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client
) -> None:
    with local_http(server, "team/nightly") as http:
        image = push_image(OCIClient(http), "team/nightly", "n1", "nightly-1")
    create_policy(
        api,
        name="nightly",
        direction="push",
        repositories="team/nightly",
        trigger="cron",
        schedule="@every 1s",
    )
    schedule = api.get("/jobs/schedules/replicate").json()
    assert schedule["cron"] == "* * * * *" and schedule["enabled"]  # the sweep, every minute
    time.sleep(1.1)
    # The sweep now rather than at the next minute: it queues the due policy's run (unless the
    # minute's own sweep just did).
    sweep = api.post("/jobs", json={"kind": "replicate", "params": {}}).json()
    queued = wait_for_job(api, sweep["id"])["result"]["queued"]
    assert set(queued) <= {"nightly"}
    deadline = time.monotonic() + 60
    while not (runs := api.get("/replication/runs", params={"policy": "nightly"}).json()):
        assert time.monotonic() < deadline, "the cron policy did not run"
        time.sleep(0.2)
    assert wait_for_job(api, runs[0]["job_id"])["status"] == "succeeded"
    assert_same(remote_http, "team/nightly", "n1", image)
    runs = api.get("/replication/runs", params={"policy": "nightly"}).json()
    assert {run["trigger"] for run in runs} == {"cron"}
    # Disabled, it is due every second and yet never queued.
    assert api.patch("/replication/policies/nightly", json={"enabled": False}).status_code == 200
    time.sleep(1.1)
    sweep = api.post("/jobs", json={"kind": "replicate", "params": {}}).json()
    assert "nightly" not in wait_for_job(api, sweep["id"])["result"]["queued"]


# --- a worker killed mid-run --------------------------------------------------------------------------
def test_a_worker_killed_mid_run_and_the_job_resumed_elsewhere(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client, front: Front
) -> None:
    upstream = OCIClient(remote_http)
    images = {f"k{n}": push_image(upstream, "killed/app", f"k{n}", f"killed-{n}") for n in range(SLOW_IMAGES)}
    create_policy(api, name="killed", direction="pull", repositories="killed/**", dest_namespace="resumed",
                  concurrency=SLOW_CONCURRENCY)  # fmt: skip
    front.reset()
    front.blob_delay = 0.5
    try:
        queued = api.post("/replication/policies/killed/run").json()
        first_id = _wait_for_run_with_artifacts(api, queued["job_id"], at_least=2)
        workers = job_worker_children(server)
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)  # no goodbye: the job's lease runs out
    finally:
        front.reset()
    job = wait_for_job(api, queued["job_id"], 120)  # serve starts another worker; it takes the job over
    assert job["status"] == "succeeded", job
    runs = api.get("/replication/runs", params={"job_id": queued["job_id"]}).json()
    assert [run["id"] for run in runs][-1] == first_id and len(runs) == 2
    first = api.get(f"/replication/runs/{first_id}").json()
    assert first["status"] == "failed" and "interrupted" in first["error"]
    arrived = first["counters"]["artifacts_copied"]
    second = api.get(f"/replication/runs/{runs[0]['id']}").json()
    assert second["status"] == "succeeded"
    counters = second["counters"]
    assert counters["artifacts_copied"] + counters["artifacts_skipped"] == len(images)
    assert counters["artifacts_copied"] <= len(images) - arrived  # what arrived is not copied again
    with local_http(server, "resumed/app") as http:
        for tag, image in images.items():
            assert_same(http, "resumed/app", tag, image)


def test_event_trigger_propagates_a_deleted_tag(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client
) -> None:
    create_policy(
        api, name="mirror-deletes", direction="push", repositories="team/del/**", trigger="event",
        propagate_deletes=True,
    )  # fmt: skip
    with local_http(server, "team/del/app") as http:
        local = OCIClient(http)
        push_image(local, "team/del/app", "old", "del-old")
        kept = push_image(local, "team/del/app", "kept", "del-kept")
        _wait_until(
            lambda: (
                _has_tag(remote_http, "team/del/app", "old") and _has_tag(remote_http, "team/del/app", "kept")
            )
        )
        assert http.delete("/v2/team/del/app/manifests/old").status_code == 202  # the tag only
    _wait_until(lambda: not _has_tag(remote_http, "team/del/app", "old"))
    assert_same(remote_http, "team/del/app", "kept", kept)
    runs = api.get("/replication/runs", params={"policy": "mirror-deletes"}).json()
    statuses = [api.get(f"/replication/runs/{run['id']}").json()["artifacts"][0]["status"] for run in runs]
    assert sorted(statuses) == ["copied", "copied", "deleted"]


def _has_tag(http: httpx.Client, repository: str, tag: str) -> bool:
    tags = http.get(f"/v2/{repository}/tags/list")
    return tags.status_code == 200 and tag in (tags.json().get("tags") or [])


def _wait_until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.2)


def test_a_finished_run_is_a_replication_finished_event_of_the_project_it_wrote_into(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client
) -> None:
    from tests.support.receivers import running_receiver

    push_image(OCIClient(remote_http), "hookvendor/app", "1", "hooked-1")
    assert api.post("/projects", json={"name": "hooked"}).status_code == 201
    with running_receiver() as receiver:
        for name, fmt in (("harbor", "harbor"), ("chat", "slack")):
            hook = {"name": name, "url": receiver.url, "events": ["replication_finished"], "format": fmt}
            assert api.post("/projects/hooked/webhooks", json=hook).status_code == 201
        create_policy(
            api, name="hooked-pull", direction="pull", repositories="hookvendor/**", dest_namespace="hooked"
        )
        run = run_policy(api, "hooked-pull")
        assert run["status"] == "succeeded", json.dumps(run, indent=1)
        received = receiver.wait_for_bodies(lambda got: len(got) >= 2)
    (harbor,) = [r.body for r in received if r.body.get("type") == "REPLICATION"]
    replication = harbor["event_data"]["replication"]
    assert replication["policy_name"] == "hooked-pull" and replication["run_id"] == run["id"]
    assert replication["job_status"] == "Success" and replication["trigger_type"] == "MANUAL"
    assert [a["name_tag"] for a in replication["successful_artifact"]] == ["hooked/app:1"]
    assert replication["failed_artifact"] == [] and replication["dest_resource"]["endpoint"] == "local"
    (chat,) = [r.body for r in received if "text" in r.body]
    assert chat["text"] == f"Replication hooked-pull (run {run['id']}) succeeded: 1 copied, 0 failed"


def test_both_ways_with_another_dockyard_behind_token_auth(
    server: RunningServer, api: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second dockyard as the endpoint: the upstream client's side of the Docker token flow (a
    challenge, /token with the scopes it needs, the token reused), a signature carried with its subject
    through the peer's referrers API, and the images pulled back from either side bit for bit."""
    peer_admin = ("admin", "replication-peer-Passw0rd-1")
    peer = start_server(
        tmp_path_factory.mktemp("replication-peer"), {"auth": {"enabled": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": peer_admin[1]},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=peer.url + API, auth=peer_admin, timeout=HTTP_TIMEOUT) as peer_api:
            for project in ("dr", "vendor"):
                assert peer_api.post("/projects", json={"name": project}).status_code == 201
        credentials = {"kind": "basic", "username": peer_admin[0], "secret": peer_admin[1]}
        answer = api.post("/endpoints", json={"name": "peer", "url": peer.url, "credentials": credentials})
        assert answer.status_code == 201, answer.text
        assert api.post("/projects", json={"name": "frompeer"}).status_code == 201
        with local_http(server, "team/peered") as http:
            local = OCIClient(http)
            image = push_image(local, "team/peered", "1", "peered-1", layers=2)
            signed = push_signature(local, "team/peered", image)
        create_policy(
            api,
            name="to-peer",
            endpoint="peer",
            direction="push",
            repositories="team/peered",
            dest_namespace="dr",
        )
        run = run_policy(api, "to-peer")
        assert run["status"] == "succeeded", json.dumps(run, indent=1)
        with bearer_client(peer.url, peer_admin, ("dr/peered", "vendor/tool")) as http:
            assert_same(http, "dr/peered", "1", image)
            referrers = http.get(f"/v2/dr/peered/referrers/{image.digest}").json()["manifests"]
            assert [r["digest"] for r in referrers] == [signed.digest]
            vendored = push_image(OCIClient(http), "vendor/tool", "2.0", "peer-tool-2.0")
        create_policy(
            api,
            name="from-peer",
            endpoint="peer",
            direction="pull",
            repositories="vendor/**",
            dest_namespace="frompeer",
        )
        pulled = run_policy(api, "from-peer")
        assert pulled["status"] == "succeeded", json.dumps(pulled, indent=1)
        with local_http(server, "frompeer/tool") as http:
            assert_same(http, "frompeer/tool", "2.0", vendored)
    finally:
        peer.stop()


def test_push_into_distribution_v3(
    server: RunningServer, api: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """distribution v3.1.1 (`registry:3`) behind htpasswd as the destination: what it serves back is what
    was pushed here, and a second run copies nothing."""
    from tests.support.registry2 import distribution_v3

    with running_registry2(tmp_path_factory.mktemp("replication-v3"), USER, distribution_v3()) as url:
        credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
        assert (
            api.post("/endpoints", json={"name": "v3", "url": url, "credentials": credentials}).status_code
            == 201
        )
        with local_http(server, "team/tov3") as http:
            image = push_image(OCIClient(http), "team/tov3", "1", "to-v3-1", layers=2)
        create_policy(api, name="to-v3", endpoint="v3", direction="push", repositories="team/tov3")
        run = run_policy(api, "to-v3")
        assert run["status"] == "succeeded", json.dumps(run, indent=1)
        with httpx.Client(base_url=url, auth=USER, timeout=HTTP_TIMEOUT) as v3:
            assert_same(v3, "team/tov3", "1", image)
        again = run_policy(api, "to-v3")
        assert again["counters"]["artifacts_copied"] == 0 and again["counters"]["bytes_copied"] == 0
        assert api.delete("/replication/policies/to-v3").status_code == 204
        assert api.delete("/endpoints/v3").status_code == 204
