"""The fuzzing suite's fixtures: one app per test module (tests/fuzz/target.py says what is in it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.target import CONFIG, SENTINEL, Target, first_layer
from tests.support.inprocess import ADMIN, in_process_client
from tests.support.ociclient import OCIClient, describe


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    with in_process_client(workdir, CONFIG) as http:
        for project, public in (("fuzz", False), ("library", True), ("sentinel", False)):
            created = http.post("/api/v1/projects", json={"name": project, "public": public}, auth=ADMIN)
            assert created.status_code == 201, describe(created)
        http.auth = ADMIN
        oci = OCIClient(http)
        fuzz_image = oci.push_image("fuzz/app", "v1")
        oci.push_image("library/app", "v1")
        sentinel = oci.push_image(SENTINEL, "v1")
        http.auth = None  # type: ignore[assignment]
        target = Target(
            http, first_layer(http, "fuzz/app", fuzz_image), sentinel, first_layer(http, SENTINEL, sentinel)
        )
        target.assert_still_serves()
        yield target
        target.assert_still_serves()  # after the whole module too: tests with `api_alive` check less


@pytest.fixture
def alive(target: Target) -> Iterator[Target]:
    """The target, checked to still serve after the test."""
    yield target
    target.assert_still_serves()


@pytest.fixture
def api_alive(target: Target) -> Iterator[Target]:
    """The target, its management API checked to still answer after the test: what an /api/v1 request
    can break. The registry's pulls are checked once, after the module (`alive`'s 4 requests after each
    of the ~150 operations' tests were ~600 of the module's ~2,600)."""
    yield target
    target.assert_api_answers()
