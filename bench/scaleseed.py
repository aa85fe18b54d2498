"""Seed a dockyard for the scale scenario through its own services, without HTTP (bench/scale.py).

    python -m bench.scaleseed CONFIG.yml REPOSITORIES TAGS

Builds the services from the config file as a worker does, uploads the small image's config and layer
to `scale/base` once, then for every repository `scale/r-NNNNNN` mounts both blobs from there and puts
the manifest as `latest` (the calls a cross-repository push makes: Registry.mount_blob twice, then
Registry.put_manifest), and tags the manifest TAGS times in `scale/tags`. Prints one JSON line with
the seconds and CPU seconds each phase took. Run it before the server starts (no cache to keep right).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.scalelayout import ScaleImage, repository_name

BASE = "scale/base"
TAGGED = "scale/tags"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def main(argv: list[str]) -> int:
    from dockyard.app import build_services
    from dockyard.config.loader import load_settings

    config, repositories, tags = Path(argv[0]), int(argv[1]), int(argv[2])
    image = ScaleImage.build()
    services = build_services(load_settings(config))
    registry = services.registry
    try:
        for blob in (image.config, image.layer):
            state = services.blob_uploads.start(BASE)
            append = services.uploads.begin_append(state)
            append.write(blob)
            services.blob_uploads.commit(append.finish(), image.digest_of(blob))
        registry.put_manifest(BASE, "latest", image.manifest, MANIFEST_TYPE)
        phases = {}
        started, cpu = time.monotonic(), time.process_time()
        for index in range(repositories):
            name = repository_name(index)
            registry.mount_blob(name, image.config_digest, BASE)
            registry.mount_blob(name, image.layer_digest, BASE)
            registry.put_manifest(name, "latest", image.manifest, MANIFEST_TYPE)
        phases["repositories"] = (time.monotonic() - started, time.process_time() - cpu)
        started, cpu = time.monotonic(), time.process_time()
        registry.mount_blob(TAGGED, image.config_digest, BASE)
        registry.mount_blob(TAGGED, image.layer_digest, BASE)
        for index in range(tags):
            registry.put_manifest(TAGGED, f"t{index:05d}", image.manifest, MANIFEST_TYPE)
        phases["tags"] = (time.monotonic() - started, time.process_time() - cpu)
    finally:
        services.close()
    print(json.dumps({name: {"seconds": s, "cpu_seconds": c} for name, (s, c) in phases.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
