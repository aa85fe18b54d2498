"""Concurrent uploads on /v2 (`limits.uploads_per_client`, `limits.uploads_total`) through the whole
app in process, open (no auth: a client is its address). An upload holds a place from its POST to its
PUT or DELETE; an abandoned one gives it back after `limits.upload_timeout`; a refused POST leaves no
session behind; a refused PATCH keeps the upload."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import sqlalchemy
from starlette.testclient import TestClient

from dockyard.api.oci.upload_limits import RETRY_SLOTS_SECONDS, UploadLimits
from tests.support.inprocess import BASE_URL, in_process_client, in_process_settings

REPO = "/v2/team/app/blobs/uploads/"


def config(**limits: Any) -> dict[str, Any]:
    return {"auth": {"enabled": False}, "limits": limits}


def start(http: TestClient) -> Any:
    return http.post(REPO)


def finish(http: TestClient, location: str, data: bytes) -> Any:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return http.put(location, params={"digest": digest}, content=data)


def assert_too_many(answer: Any, words: str) -> None:
    assert answer.status_code == 429, answer.text
    error = answer.json()["errors"][0]
    assert error["code"] == "TOOMANYREQUESTS" and words in error["message"]
    assert answer.headers["Retry-After"] == "5"


def test_a_client_over_its_uploads_is_refused_until_one_finishes(tmp_path: Path) -> None:
    with in_process_client(tmp_path, config(uploads_per_client=2)) as http:
        first, second = start(http), start(http)
        assert (first.status_code, second.status_code) == (202, 202)
        assert_too_many(start(http), "you have 2 uploads open")
        neighbour = TestClient(http.app, base_url=BASE_URL, client=("192.0.2.99", 1))
        assert start(neighbour).status_code == 202  # another client: places of its own
        assert finish(http, first.headers["Location"], b"layer").status_code == 201
        third = start(http)
        assert third.status_code == 202
        assert http.delete(second.headers["Location"]).status_code == 204  # a cancel gives it back too
        assert start(http).status_code == 202
        assert http.post(REPO, params={"digest": "sha256:" + hashlib.sha256(b"x").hexdigest()},
                         content=b"x").status_code == 201  # single-request uploads hold no place  # fmt: skip
        metrics = http.get("/metrics").text
        assert 'registry_requests_limited_total{limit="uploads_client"} 1.0' in metrics


def test_the_registry_wide_limit_counts_every_client(tmp_path: Path) -> None:
    with in_process_client(tmp_path, config(uploads_total=2)) as http:
        other = TestClient(http.app, base_url=BASE_URL, client=("192.0.2.99", 1))
        assert start(http).status_code == 202
        assert start(other).status_code == 202
        assert_too_many(start(other), "the registry has 2 uploads open")


def test_a_refused_post_leaves_no_session(tmp_path: Path) -> None:
    with in_process_client(tmp_path, config(uploads_per_client=1)) as http:
        assert start(http).status_code == 202
        assert start(http).status_code == 429
        engine = sqlalchemy.create_engine(in_process_settings(tmp_path, config()).database_url)
        with engine.connect() as db:  # one session: the one that got its place
            assert db.execute(sqlalchemy.text("SELECT count(*) FROM uploads")).scalar() == 1
        engine.dispose()


def test_an_abandoned_upload_gives_its_place_back_and_a_late_patch_must_wait(tmp_path: Path) -> None:
    with in_process_client(tmp_path, config(uploads_per_client=1, upload_timeout="1s")) as http:
        abandoned = start(http).headers["Location"]
        assert start(http).status_code == 429
        time.sleep(1.3)  # the client went away mid-push
        fresh = start(http)
        assert fresh.status_code == 202
        late = http.patch(abandoned, content=b"more")
        assert_too_many(late, "you have 1 uploads open")
        assert http.get(abandoned).status_code == 204  # refused, not lost: it may resume later
        assert finish(http, fresh.headers["Location"], b"x").status_code == 201
        assert http.patch(abandoned, content=b"more").status_code == 202
        assert finish(http, abandoned, b"").status_code == 400  # wrong digest: ends it, and its place
        assert start(http).status_code == 202


def test_patches_keep_a_slow_upload_in_its_place(tmp_path: Path) -> None:
    with in_process_client(tmp_path, config(uploads_per_client=1, upload_timeout="1s")) as http:
        slow = start(http).headers["Location"]
        for _ in range(3):
            time.sleep(0.6)
            assert http.patch(slow, content=b"chunk").status_code == 202
        assert start(http).status_code == 429  # 1.8 s after its POST, still holding its place
        assert finish(http, slow, b"").status_code in (201, 400)


def test_pools_out_of_reach_let_uploads_through_and_are_not_asked_each_time() -> None:
    calls: list[str] = []

    class Unreachable:
        def claim(self, pools: Any, holder: str, ttl: float) -> str | None:
            calls.append(holder)
            raise OSError("Redis timed out")

        def release(self, names: Any, holder: str) -> None:
            calls.append(holder)
            raise OSError("Redis timed out")

    now = [0.0]
    limits = UploadLimits(Unreachable(), per_client=1, total=0, timeout=60, clock=lambda: now[0])
    scope = {"client": ("192.0.2.1", 1)}
    for number in range(5):
        asyncio.run(limits.claim(scope, f"u{number}"))  # no 429, no error: the upload goes on
    assert calls == ["u0"]
    now[0] += RETRY_SLOTS_SECONDS
    asyncio.run(limits.claim(scope, "u5"))
    assert calls == ["u0", "u5"]
