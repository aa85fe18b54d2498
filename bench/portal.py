"""How fast the web portal renders a page of 100 with many repositories in the registry (issue 14's
target: under 200 ms for a page of 100 with 10,000 repositories).

    python -m bench.portal [--repositories 10000] [--projects 150] [--rounds 30]

Starts a real `dockyard serve` (SQLite, one worker, auth on), seeds it through its own services, not
over HTTP (bench/scaleseed.py's image: every repository `scale/r-NNNNNN` mounts the same two blobs and
puts its manifest as `latest`), and more projects so the projects page is full; then logs in through
the portal's form and times, interleaved, the projects page and the `scale` project's repositories
page (100 a page, sorted by name, first and last page), and the /api/v1 call behind the latter for
comparison. Prints the medians and 90th percentiles (client-side wall time) and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.support.portal import PortalBrowser
from tests.support.server import start_server

from bench.scalelayout import ScaleImage, repository_name
from bench.scaleseed import BASE, MANIFEST_TYPE

PASSWORD = "bench-portal-Passw0rd"


def seed(config: Path, repositories: int, projects: int) -> float:
    from dockyard.config.loader import load_settings
    from dockyard.projects.services import ProjectService
    from dockyard.services import build_services

    services = build_services(load_settings(config))
    started = time.monotonic()
    try:
        names = ProjectService(services.db)
        names.create("scale")
        for index in range(projects - 1):
            names.create(f"team-{index:04d}", public=index % 2 == 0)
        image = ScaleImage.build()
        for blob in (image.config, image.layer):
            state = services.blob_uploads.start(BASE)
            append = services.uploads.begin_append(state)
            append.write(blob)
            services.blob_uploads.commit(append.finish(), image.digest_of(blob))
        registry = services.registry
        registry.put_manifest(BASE, "latest", image.manifest, MANIFEST_TYPE)
        for index in range(repositories - 1):
            name = repository_name(index)
            registry.mount_blob(name, image.config_digest, BASE)
            registry.mount_blob(name, image.layer_digest, BASE)
            registry.put_manifest(name, "latest", image.manifest, MANIFEST_TYPE)
    finally:
        services.close()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.portal", description=__doc__)
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-portal-") as workdir:
        config = {"auth": {"enabled": True}, "http": {"workers": 1}}
        server = start_server(Path(workdir), config, env={"DOCKYARD_ADMIN_PASSWORD": PASSWORD})
        try:
            seconds = seed(server.config_path, args.repositories, args.projects)
            print(f"seeded {args.repositories} repositories and {args.projects} projects in {seconds:.0f} s")
            with PortalBrowser(server.url) as browser:
                assert browser.login("admin", PASSWORD).status_code == 303
                last = (args.repositories + 99) // 100
                pages = {
                    "projects page (100)": "/ui/projects?page_size=100",
                    "repositories page 1 (100)": "/ui/projects/scale?page_size=100",
                    f"repositories page {last} (100)": f"/ui/projects/scale?page_size=100&page={last}",
                    "repositories page, sorted by size": "/ui/projects/scale?page_size=100&sort=-size",
                    "artifacts page": f"/ui/repositories/{repository_name(0)}",
                }
                cookie = browser.http.cookies.get("dockyard_ui")
                api = {"api: GET /repositories?project=scale (100)": "/api/v1/repositories"}
                timings: dict[str, list[float]] = {name: [] for name in [*pages, *api]}
                for _ in range(3):  # warm up: the API and the portal are built on their first request
                    for path in pages.values():
                        assert browser.get(path).status_code == 200
                for _ in range(args.rounds):
                    for name, path in pages.items():
                        started = time.perf_counter()
                        answer = browser.get(path)
                        timings[name].append(time.perf_counter() - started)
                        assert answer.status_code == 200, (path, answer.status_code)
                    for name, path in api.items():
                        started = time.perf_counter()
                        answer = browser.http.get(
                            path,
                            params={"project": "scale", "page_size": "100"},
                            headers={"Cookie": f"dockyard_session={cookie}"},
                        )
                        timings[name].append(time.perf_counter() - started)
                        assert answer.status_code == 200, answer.text
        finally:
            server.stop()
    print(f"{args.rounds} rounds, interleaved; load average {os.getloadavg()[0]:.2f} (1 min)")
    for name, values in timings.items():
        ordered = sorted(values)
        p90 = ordered[int(len(ordered) * 0.9) - 1]
        print(f"  {name:42s} median {statistics.median(values) * 1000:6.1f} ms   p90 {p90 * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
