"""registry:2 notifications from a real `dockyard serve` to real HTTP listeners on loopback
(docs/notifications.md): the envelope listeners read, the configured headers, ignored media types and
actions, a listener that fails and then recovers (nothing lost, nothing accepted twice), and one that
hangs (the registry answers pushes at once; other listeners are not held up)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.test_cli import Cli
from tests.support.ociclient import OCIClient
from tests.support.receivers import Receiver, running_receiver
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "notifications-Passw0rd")
EVENTS_TYPE = "application/vnd.docker.distribution.events.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/octet-stream"


@pytest.fixture(scope="module")
def receivers() -> Iterator[dict[str, Receiver]]:
    with (
        running_receiver() as main,
        running_receiver() as filtered,
        running_receiver(fail_first=3) as flaky,
        running_receiver(hang_seconds=3.0) as hung,
    ):
        yield {"main": main, "filtered": filtered, "flaky": flaky, "hung": hung}


@pytest.fixture(scope="module")
def server(
    receivers: dict[str, Receiver], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    endpoints: list[dict[str, Any]] = [
        {
            "name": "main",
            "url": receivers["main"].url,
            "headers": {"Authorization": ["Bearer s3cret"], "X-Team": "platform"},
        },
        {
            "name": "filtered",
            "url": receivers["filtered"].url,
            "ignoredmediatypes": [LAYER],
            "ignore": {"actions": ["delete", "pull"]},
        },
        {"name": "flaky", "url": receivers["flaky"].url, "threshold": 2, "backoff": "2s"},
        {"name": "hung", "url": receivers["hung"].url, "timeout": "1s", "threshold": 1, "backoff": "1s"},
        {"name": "off", "url": receivers["main"].url + "?off", "disabled": True},
    ]
    running = start_server(
        tmp_path_factory.mktemp("notifications"),
        {
            "version": "0.1",  # a registry:2 file, with its notifications section
            "auth": {"enabled": True},
            "storage": {"delete": {"enabled": True}},
            "jobs": {"run_in_serve": True},
            "upstream": {"allowed_networks": ["127.0.0.0/8"]},  # the listeners are on loopback
            "notifications": {"endpoints": endpoints},
        },
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield OCIClient(http)


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield http


def deliveries(api: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
    response = api.get(f"/notifications/{endpoint}/deliveries", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return list(response.json())


def of_repo(events: list[dict[str, Any]], repo: str) -> list[dict[str, Any]]:
    return [event for event in events if event["target"].get("repository") == repo]


def test_a_push_sends_blob_and_manifest_events_in_registry2_envelope(
    server: RunningServer, receivers: dict[str, Receiver], oci: OCIClient, repo_name: str
) -> None:
    pushed = oci.push_image(repo_name, "v1")
    main = receivers["main"]
    main.wait_for(lambda events: len(of_repo(events, repo_name)) == 3)

    blobs, manifests = (
        [
            e
            for e in of_repo(main.accepted_events(), repo_name)
            if (e["target"]["mediaType"] == LAYER) == is_blob
        ]
        for is_blob in (True, False)
    )
    assert len(blobs) == 2 and len(manifests) == 1
    manifest = manifests[0]
    assert manifest["action"] == "push"
    target = manifest["target"]
    assert target["mediaType"] == OCI_MANIFEST
    assert target["digest"] == pushed.digest
    assert target["size"] == target["length"] == len(pushed.body)
    assert target["repository"] == repo_name
    assert target["tag"] == "v1"
    assert target["url"].endswith(f"/v2/{repo_name}/manifests/{pushed.digest}")
    assert manifest["actor"] == {"name": "admin"}
    assert manifest["request"]["method"] == "PUT"
    assert manifest["request"]["useragent"].startswith("python-httpx")
    assert manifest["request"]["host"] == server.host
    assert manifest["request"]["id"] and manifest["request"]["addr"].startswith("127.0.0.1:")
    assert manifest["source"]["addr"].endswith(f":{server.host.rsplit(':', 1)[1]}")
    assert manifest["source"]["instanceID"]
    assert manifest["id"] and manifest["timestamp"].endswith("Z")
    assert all(blob["action"] == "push" and blob["target"]["size"] > 0 for blob in blobs)

    request = next(r for r in main.requests if any(e["id"] == manifest["id"] for e in r.body["events"]))
    assert request.headers["content-type"] == [EVENTS_TYPE]
    assert request.headers["authorization"] == ["Bearer s3cret"]
    assert request.headers["x-team"] == ["platform"]


def test_a_delete_sends_a_delete_event(
    receivers: dict[str, Receiver], oci: OCIClient, repo_name: str
) -> None:
    pushed = oci.push_image(repo_name, "v1")
    response = oci.http.delete(f"/v2/{repo_name}/manifests/{pushed.digest}")
    assert response.status_code == 202
    main = receivers["main"]
    main.wait_for(lambda events: any(e["action"] == "delete" for e in of_repo(events, repo_name)))
    deleted = [e for e in of_repo(main.accepted_events(), repo_name) if e["action"] == "delete"]
    assert deleted[0]["target"] == {"digest": pushed.digest, "repository": repo_name}
    assert deleted[0]["request"]["method"] == "DELETE"


def test_pulls_send_pull_events_in_batches(
    receivers: dict[str, Receiver], oci: OCIClient, repo_name: str
) -> None:
    pushed = oci.push_image(repo_name, "v1")
    layer = json.loads(pushed.body)["layers"][0]
    assert oci.get_manifest(repo_name, "v1").status_code == 200
    assert oci.http.get(f"/v2/{repo_name}/blobs/{layer['digest']}").status_code == 200
    assert oci.http.head(f"/v2/{repo_name}/manifests/v1").status_code == 200  # a HEAD is no pull
    main, filtered = receivers["main"], receivers["filtered"]
    main.wait_for(lambda events: len([e for e in of_repo(events, repo_name) if e["action"] == "pull"]) == 2)

    pulls = [e for e in of_repo(main.accepted_events(), repo_name) if e["action"] == "pull"]
    manifest = next(e for e in pulls if e["target"]["mediaType"] == OCI_MANIFEST)
    assert manifest["target"]["digest"] == pushed.digest and manifest["target"]["tag"] == "v1"
    assert manifest["request"]["method"] == "GET" and manifest["actor"] == {"name": "admin"}
    blob = next(e for e in pulls if e["target"]["mediaType"] == LAYER)
    assert (blob["target"]["digest"], blob["target"]["size"]) == (layer["digest"], layer["size"])
    time.sleep(1.0)
    assert not [e for e in of_repo(filtered.accepted_events(), repo_name) if e["action"] == "pull"]


def test_ignored_media_types_and_actions_are_not_sent(
    receivers: dict[str, Receiver], oci: OCIClient, repo_name: str
) -> None:
    pushed = oci.push_image(repo_name, "v1")
    assert oci.http.delete(f"/v2/{repo_name}/manifests/{pushed.digest}").status_code == 202
    main, filtered = receivers["main"], receivers["filtered"]
    main.wait_for(lambda events: len(of_repo(events, repo_name)) == 4)  # 2 blobs, manifest, delete
    filtered.wait_for(lambda events: len(of_repo(events, repo_name)) >= 1)
    time.sleep(1.0)  # anything else it would get has been sent by now (main got it all)
    got = of_repo(filtered.accepted_events(), repo_name)
    assert [(e["action"], e["target"]["mediaType"]) for e in got] == [("push", OCI_MANIFEST)]


def test_a_failing_listener_gets_every_event_once_it_recovers(
    receivers: dict[str, Receiver], oci: OCIClient, api: httpx.Client, repo_name: str
) -> None:
    digests = [oci.push_image(repo_name, f"v{n}", seed=str(n)).digest for n in range(3)]
    main, flaky = receivers["main"], receivers["flaky"]
    main.wait_for(lambda events: len(of_repo(events, repo_name)) == 9)
    flaky.wait_for(lambda events: len(of_repo(events, repo_name)) >= 9, timeout=60)

    assert sum(1 for r in flaky.requests if r.status == 500) == 3  # it did fail, and was retried
    got = of_repo(flaky.accepted_events(), repo_name)
    ids = [e["id"] for e in got]
    assert len(ids) == len(set(ids)) == 9  # nothing lost, nothing accepted twice
    assert sorted(e["id"] for e in of_repo(main.accepted_events(), repo_name)) == sorted(ids)
    assert {e["target"]["digest"] for e in got if e["target"]["mediaType"] == OCI_MANIFEST} == set(digests)

    # The delivery log, oldest first: the three 500s, then deliveries that went through.
    log = list(reversed(deliveries(api, "flaky")))
    assert [d["status_code"] for d in log[:3]] == [500, 500, 500]
    assert all(not d["ok"] and "answered 500" in d["error"] for d in log[:3])
    assert log[-1]["ok"] and log[-1]["error"] is None
    flaky = next(e for e in api.get("/notifications").json() if e["name"] == "flaky")
    assert flaky["failures"] == 0 and flaky["last"]["status_code"] == 200


def test_a_hanging_listener_neither_slows_pushes_nor_holds_up_others(
    receivers: dict[str, Receiver], oci: OCIClient, api: httpx.Client, repo_name: str
) -> None:
    oci.push_blob(repo_name, b"config " + repo_name.encode())
    started = time.monotonic()
    oci.push_image(repo_name, "v1")
    # The hung listener takes 3 s per request and the endpoint's timeout is 1 s: a push that waited on
    # delivery would take at least a second per event.
    assert time.monotonic() - started < 1.0
    receivers["main"].wait_for(lambda events: len(of_repo(events, repo_name)) >= 4, timeout=10)
    hung = receivers["hung"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not hung.requests:
        time.sleep(0.2)
    assert hung.requests, "the hung listener was never tried"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not deliveries(api, "hung"):
        time.sleep(0.2)
    attempt = deliveries(api, "hung")[-1]
    assert attempt["status_code"] is None and "no answer within" in attempt["error"]
    assert attempt["duration_ms"] < 2500  # its timeout is 1 s; the listener takes 3 s


def test_endpoints_and_the_delivery_log_for_administrators_only(
    server: RunningServer, api: httpx.Client, tmp_path: Any
) -> None:
    listed = {e["name"]: e for e in api.get("/notifications").json()}
    assert set(listed) == {"main", "filtered", "flaky", "hung", "off"}
    assert listed["off"]["disabled"] and not listed["main"]["disabled"]
    assert listed["off"]["url"].endswith("/events")  # the query is not shown
    assert api.get("/notifications/nosuch/deliveries").status_code == 404

    user = ("hook-reader", "hook-reader-Passw0rd")
    assert api.post("/users", json={"username": user[0], "password": user[1]}).status_code == 201
    as_user = httpx.get(f"{server.url}/api/v1/notifications", auth=user, timeout=HTTP_TIMEOUT)
    assert as_user.status_code == 403
    assert (
        httpx.get(
            f"{server.url}/api/v1/notifications/main/deliveries", auth=user, timeout=HTTP_TIMEOUT
        ).status_code
        == 403
    )
    assert httpx.get(f"{server.url}/api/v1/notifications", timeout=HTTP_TIMEOUT).status_code == 401

    cli = Cli(tmp_path / "home")
    cli.home.mkdir()
    cli.login(server.url, *ADMIN)
    table = cli.ok("notifications", "list")
    assert "main" in table and "disabled" in table
    assert [e["name"] for e in cli.json("notifications", "list")] == list(listed)
    assert "no notification endpoint named" in cli.fails("notifications", "log", "nosuch")


def test_a_listener_on_a_private_address_is_refused_without_allowed_networks(
    make_server: Any,
) -> None:
    """The SSRF guard: an endpoint URL naming loopback (or a name resolving to it) is not fetched
    unless upstream.allowed_networks allows it; the delivery log says why."""
    with running_receiver() as receiver:
        server = make_server(
            {
                "auth": {"enabled": True},
                "jobs": {"run_in_serve": True},
                "notifications": {
                    "endpoints": [{"name": "inside", "url": receiver.url.replace("127.0.0.1", "localhost")}]
                },
            },
            env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
        )
        with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
            OCIClient(http).push_image("ssrf/app", "v1")
            deadline = time.monotonic() + 20
            log: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not log:
                log = http.get("/api/v1/notifications/inside/deliveries").json()
                time.sleep(0.2)
        assert log and log[0]["status_code"] is None and "may not fetch from" in log[0]["error"]
        assert receiver.requests == []
