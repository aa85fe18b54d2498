"""The room an upload request has in its project's quota (projects.upload_room): the two rules, open
uploads recorded in the database, and requests of one process sharing the room byte by byte.
Runs on SQLite, and on PostgreSQL in the DOCKYARD_TEST_DB=postgresql pass."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import insert

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects.quotas import Quotas
from dockyard.projects.services import ProjectService
from dockyard.projects.upload_room import UploadRoom
from dockyard.storage.models import Upload


@pytest.fixture
def quotas(db: Database) -> Quotas:
    project = ProjectService(db).create("team").id
    quotas = Quotas(db)
    with db.write() as connection:
        quotas.charge(connection, project, "sha256:held", 300)  # the largest blob the project holds
        quotas.charge(connection, project, "sha256:small", 100)
    quotas.set("team", 1000)  # used 400: room for 600
    return quotas


def open_upload(db: Database, upload_id: str, size: int, repository: str = "team/app") -> None:
    now = utcnow()
    row = {"id": upload_id, "repository": repository, "project": repository.split("/")[0], "size": size}
    with db.write() as connection:
        connection.execute(insert(Upload), {**row, "created_at": now, "updated_at": now})


def test_no_limit_means_no_room_to_count(db: Database, quotas: Quotas) -> None:
    assert quotas.upload_room("elsewhere/app", 0) is None  # a project a push would create
    quotas.set("team", None)
    assert quotas.upload_room("team/app", 0) is None


def test_new_content_gets_the_room_left_minus_the_open_uploads(db: Database, quotas: Quotas) -> None:
    room = quotas.upload_room("team/app", 0, "sha256:new")
    assert room is not None and room.available() == 600
    open_upload(db, "a" * 32, 250)
    open_upload(db, "b" * 32, 50, repository="other/app")  # another project's: does not count
    room = quotas.upload_room("team/app", 0, "sha256:new")
    assert room is not None and room.available() == 350
    assert room.take(400) == 350 and room.take(1) == 0
    refusal = room.exceeded(1)
    assert refusal.detail["open_upload_bytes"] == 250 and refusal.detail["size"] == 351
    assert "other uploads in progress 250 B" in refusal.message


def test_content_the_project_may_hold_gets_its_size_up_to_the_limit(db: Database, quotas: Quotas) -> None:
    quotas.set("team", 400)  # full
    held = quotas.upload_room("team/app", 0, "sha256:held")
    assert held is not None and held.available() == 300  # the held blob's size, no more
    unknown = quotas.upload_room("team/app", 100, None)  # a PATCH: could be the largest blob held
    assert unknown is not None and unknown.available() == 200
    assert quotas.upload_room("team/app", 0, "sha256:new").available() == 0  # type: ignore[union-attr]
    open_upload(db, "c" * 32, 350)  # open bytes up to the limit (400) at most
    again = quotas.upload_room("team/app", 0, "sha256:held")
    assert again is not None and again.available() == 50


def test_requests_of_one_process_share_the_room(db: Database, quotas: Quotas) -> None:
    rooms = [quotas.upload_room("team/app", 0, "sha256:new") for _ in range(8)]
    taken: list[int] = []

    def stream(room: UploadRoom | None) -> None:
        assert room is not None
        total = 0
        while got := room.take(7):
            total += got
        taken.append(total)

    threads = [threading.Thread(target=stream, args=(room,)) for room in rooms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(taken) == 600  # exactly the room, however the bytes interleaved


def test_recorded_bytes_count_once_for_every_request(db: Database, quotas: Quotas) -> None:
    early = quotas.upload_room("team/app", 0, "sha256:new")  # read the open uploads before the others
    writer = quotas.upload_room("team/app", 0, "sha256:new")
    assert early is not None and writer is not None
    assert writer.take(200) == 200
    assert early.available() == 400  # streaming bytes of this process count at once
    open_upload(db, "d" * 32, 200)  # the writer's request records its bytes in its row...
    writer.settle(recorded=True)  # ...and then settles
    assert early.available() == 400  # still counted for a request that read the rows before
    later = quotas.upload_room("team/app", 0, "sha256:new")
    assert later is not None and later.available() == 400  # read from the row, not twice
    failed = quotas.upload_room("team/app", 0, "sha256:new")
    assert failed is not None and failed.take(100) == 100
    assert later.available() == 300
    failed.settle(recorded=False)  # its bytes were never recorded (or were dropped)
    assert later.available() == 400 and early.available() == 400
