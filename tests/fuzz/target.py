"""What the fuzzing suite runs against: the whole dockyard stack in this process
(tests/support/inprocess.py), with auth on, a private project `fuzz` holding one image, a public
project `library`, and a sentinel image the generated requests cannot name (conftest.py builds it).

Each test sends Hypothesis- or schemathesis-generated requests and asserts that no client input gets a
5xx (nor an exception out of the app), then that the server still serves: the image pulls bit for bit
and the management API answers the administrator.

Examples per test: DOCKYARD_FUZZ_EXAMPLES (default FUZZ_EXAMPLES, a quick run inside `make test`); raise
it for a long run, e.g. `DOCKYARD_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/fuzz`.
Failing cases of tests/fuzz/test_api_fuzz.py are reported as found, not shrunk; DOCKYARD_FUZZ_SHRINK=1
shrinks them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tests.support.inprocess import ADMIN, TestClient
from tests.support.ociclient import PushedManifest, describe

FUZZ_EXAMPLES = 60
EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", FUZZ_EXAMPLES))
# Wrong passwords are part of the input: no lockout may get in the way of the checks as admin.
CONFIG = {"auth": {"login_limit": {"max_failures": 1_000_000}}}


# The image the checks pull after each test. The fuzzed requests (as admin, mostly) may push, tag and
# delete anything in the projects they know; this repository's name they do not generate.
SENTINEL = "sentinel/untouched-by-the-fuzzer"


@dataclass
class Target:
    http: TestClient  # no credentials of its own: each request says what it sends
    layer_digest: str  # a layer of fuzz/app:v1, for requests to reach an existing blob
    image: PushedManifest  # the SENTINEL image
    sentinel_layer: str

    def assert_still_serves(self) -> None:
        """The registry pulls what it had, and the management API answers, as before the run."""
        base = self.http.get("/v2/", auth=ADMIN)
        assert base.status_code == 200, describe(base)
        pulled = self.http.get(
            f"/v2/{SENTINEL}/manifests/v1", auth=ADMIN, headers={"Accept": self.image.media_type}
        )
        assert pulled.status_code == 200 and pulled.content == self.image.body, describe(pulled)
        layer = self.http.get(f"/v2/{SENTINEL}/blobs/{self.sentinel_layer}", auth=ADMIN)
        assert layer.status_code == 200, describe(layer)
        self.assert_api_answers()

    def assert_api_answers(self) -> None:
        """The management API answers the administrator, and still lists the sentinel's project."""
        projects = self.http.get("/api/v1/projects", auth=ADMIN)
        assert projects.status_code == 200, describe(projects)
        assert "sentinel" in {project["name"] for project in projects.json()}


def first_layer(http: TestClient, name: str, image: PushedManifest) -> str:
    manifest = http.get(f"/v2/{name}/manifests/v1", auth=ADMIN, headers={"Accept": image.media_type})
    assert manifest.status_code == 200, describe(manifest)
    return str(manifest.json()["layers"][0]["digest"])
