"""The scenarios: what each one sends, how it is measured, and the issue's target ratio for it."""

from __future__ import annotations

import functools
import http.client
import itertools
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.engines import ENGINES, OperationFactory
from bench.operations import (
    UniqueBlobs,
    pull_blob,
    pull_blob_following,
    push_chunked,
    push_monolithic,
    push_single_post,
)
from bench.procs import idle_share, machine_cpu_ticks, tree_cpu_seconds
from bench.seed import IMAGE_REPO, MANIFEST_ACCEPT, Seeded
from bench.servers import Server
from bench.smallrequests import SmallRequest, run_small

MIB = 1 << 20
CHUNK_SIZE = 8 * MIB


@dataclass(frozen=True)
class RunSettings:
    engine: str = "threads"
    transfer_seconds: float = 3.0
    small_seconds: float = 5.0
    connections: int = 64
    small_tool: str = "auto"  # "auto": wrk for GETs, ab for HEADs; "ab": ab for every small request


@dataclass
class Measurement:
    value: float  # MiB/s or requests/s
    errors: int = 0
    p99_ms: float | None = None
    client_cores: float = 0.0  # CPU the load generator used, in cores (the servers share the same 2 cores)
    notes: list[str] = field(default_factory=list)
    server_cpu_ms: float | None = None  # the server's CPU per request: small requests, bench/scale.py
    # The share of the machine's CPU time left idle during the run (small requests): a server whose rate
    # is short of what its CPU per request allows, with CPUs idle, waits for something other than CPU.
    idle_share: float | None = None
    # The server's CPU (its whole process tree, user + system) per MiB of payload moved: pushes and pulls.
    server_cpu_ms_per_mib: float | None = None


Measure = Callable[[Server, Seeded, RunSettings], Measurement]
RequestMaker = Callable[[Server, Seeded], SmallRequest]


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    unit: str
    target: float | None  # dockyard/reference ratio the issue asks for (absolute if candidate_only)
    measure: Measure
    # distribution has nothing to compare (e.g. it issues no tokens): only the candidate runs, and the
    # target is a figure in `unit`, not a ratio.
    candidate_only: bool = False
    # run on this other candidate server (a key of the runner's `alternates`), not the main candidate
    candidate: str | None = None
    # which reference the target is a ratio to: "v3.1.1" (the peer to beat) or "2.8.2"
    target_reference: str = "v3.1.1"
    # stores new blobs: after each round the runner deletes them from the server's data directory
    # (bench.runner.forget_pushed), so the disk holds one round's pushes at most
    pushes: bool = False


def _client_cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@functools.cache
def unique_blobs(size: int) -> UniqueBlobs:
    return UniqueBlobs(size)


@functools.cache
def supports_single_post(host: str, port: int) -> bool:
    """Does the server complete an upload from one POST ?digest= with the body (spec: MAY)?"""
    blob = unique_blobs(MIB).new()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:  # a fresh connection: a server that ignores the body leaves it unread on the wire
        conn.request(
            "POST", f"/v2/{IMAGE_REPO}/blobs/uploads/?digest={blob.digest}", body=b"".join(blob.parts)
        )
        return conn.getresponse().status == 201
    except OSError:
        return False
    finally:
        conn.close()


def _transfer(
    make_factory: Callable[[Server, Seeded], tuple[OperationFactory, str]], concurrency: int
) -> Measure:
    def measure(server: Server, seeded: Seeded, settings: RunSettings) -> Measurement:
        factory, note = make_factory(server, seeded)
        cpu_before, server_before = _client_cpu_seconds(), tree_cpu_seconds(server.process.pid)
        result = ENGINES[settings.engine](
            server.host, server.port, factory, concurrency, settings.transfer_seconds
        )
        server_cpu = tree_cpu_seconds(server.process.pid) - server_before
        cores = (_client_cpu_seconds() - cpu_before) / result.seconds
        notes = [note] if note else []
        measured = Measurement(
            result.mib_per_second, result.errors, None, cores, notes + result.error_samples
        )
        mib = result.payload_bytes / MIB
        measured.server_cpu_ms_per_mib = server_cpu * 1000 / mib if mib else None
        return measured

    return measure


def _push(size: int, form: str) -> Callable[[Server, Seeded], tuple[OperationFactory, str]]:
    def make(server: Server, seeded: Seeded) -> tuple[OperationFactory, str]:
        blobs = unique_blobs(size)
        if form == "chunked":
            return (lambda: push_chunked(IMAGE_REPO, blobs.new(), CHUNK_SIZE)), ""
        if form == "single-post" and supports_single_post(server.host, server.port):
            return (lambda: push_single_post(IMAGE_REPO, blobs.new())), ""
        note = "" if form == "post-put" else "single POST unsupported (202): measured POST+PUT"
        return (lambda: push_monolithic(IMAGE_REPO, blobs.new())), note

    return make


def _pull(size: int, follow: bool = False) -> Callable[[Server, Seeded], tuple[OperationFactory, str]]:
    """follow: take a 307 to wherever it points (the object store) instead of counting it an error."""
    operation = pull_blob_following if follow else pull_blob

    def make(server: Server, seeded: Seeded) -> tuple[OperationFactory, str]:
        digests = itertools.cycle(seeded.pull_blobs[size])
        return (lambda: operation(IMAGE_REPO, next(digests), size)), ""

    return make


def _small(make_request: Callable[[Seeded], SmallRequest]) -> Measure:
    return small_measure(lambda server, seeded: make_request(seeded))


def small_measure(make_request: RequestMaker, connections: int | None = None) -> Measure:
    """A wrk/ab run of one request; `connections` overrides the settings' (64)."""

    def measure(server: Server, seeded: Seeded, settings: RunSettings) -> Measurement:
        request = make_request(server, seeded)  # may ask the server first (e.g. for a token)
        cpu_before, server_before = _client_cpu_seconds(), tree_cpu_seconds(server.process.pid)
        machine_before = machine_cpu_ticks()
        result = run_small(
            server.host,
            server.port,
            request,
            settings.small_seconds,
            connections or settings.connections,
            settings.small_tool,
        )
        machine_after = machine_cpu_ticks()
        server_cpu = tree_cpu_seconds(server.process.pid) - server_before  # the probe's too: one in 100k
        cores = (_client_cpu_seconds() - cpu_before) / settings.small_seconds
        notes = [result.error_detail] if result.error_detail else []
        measured = Measurement(result.requests_per_second, result.errors, result.p99_ms, cores, notes)
        measured.server_cpu_ms = server_cpu * 1000 / result.requests if result.requests else None
        measured.idle_share = idle_share(machine_before, machine_after)
        return measured

    return measure


def _manifest(method: str) -> Callable[[Seeded], SmallRequest]:
    return lambda seeded: SmallRequest(
        method, f"/v2/{IMAGE_REPO}/manifests/{seeded.tag}", {"Accept": MANIFEST_ACCEPT}
    )


def build_scenarios() -> list[Scenario]:
    """Small requests first, pushes last: the pushes leave dirty pages that the kernel writes back later."""
    return _small_scenarios() + _pull_scenarios() + _push_scenarios()


def _push_scenarios() -> list[Scenario]:
    scenarios: list[Scenario] = []
    for size, name in ((MIB, "1 MiB"), (64 * MIB, "64 MiB")):
        for form, form_label in (("post-put", "POST+PUT"), ("single-post", "single POST")):
            for concurrency in (1, 8):
                # issue 10: monolithic pushes of 1 MiB (c=1 and c=8) and 64 MiB (c=1) at 1.2x v3.1.1
                target = 1.2 if form == "post-put" and (size == MIB or concurrency == 1) else None
                scenarios.append(
                    Scenario(
                        f"push-{form}-{size // MIB}m-c{concurrency}",
                        f"push {name} {form_label} c={concurrency}",
                        "MiB/s",
                        target,
                        _transfer(_push(size, form), concurrency),
                        pushes=True,
                    )
                )
    scenarios.append(
        Scenario(
            "push-chunked-64m-c1",
            "push 64 MiB chunked (8 MiB PATCHes) c=1",
            "MiB/s",
            1.2,
            _transfer(_push(64 * MIB, "chunked"), 1),
            pushes=True,
        )
    )
    return scenarios


def _pull_scenarios() -> list[Scenario]:
    scenarios: list[Scenario] = []
    for size, name, target in ((MIB, "1 MiB", None), (64 * MIB, "64 MiB", 1.2)):
        for concurrency in (1, 8):
            scenarios.append(
                Scenario(
                    f"pull-{size // MIB}m-c{concurrency}",
                    f"pull {name} c={concurrency}",
                    "MiB/s",
                    target,
                    _transfer(_pull(size), concurrency),
                )
            )
    return scenarios


def _small_scenarios() -> list[Scenario]:
    scenarios: list[Scenario] = []
    small: list[tuple[str, str, Callable[[Seeded], SmallRequest]]] = [
        (
            "blob-head",
            "blob HEAD",
            lambda s: SmallRequest("HEAD", f"/v2/{IMAGE_REPO}/blobs/{s.layer_digest}"),
        ),
        ("manifest-get", "manifest GET by tag", _manifest("GET")),
        ("manifest-head", "manifest HEAD by tag", _manifest("HEAD")),
        ("tags-list", "tags list (100 tags)", lambda s: SmallRequest("GET", f"/v2/{IMAGE_REPO}/tags/list")),
        ("catalog", "catalog (100 repos)", lambda s: SmallRequest("GET", "/v2/_catalog")),
    ]
    for key, label, make_request in small:
        target = 5.0 if key == "catalog" else 3.0  # issue 10, against v3.1.1
        scenarios.append(Scenario(key, f"{label} c=64", "req/s", target, _small(make_request)))
    return scenarios


def ha_scenarios(proxied: str) -> list[Scenario]:
    """The core scenarios for `--backend ha` (keys start with `ha-`); `proxied` names the alternate
    dockyard that streams blobs itself (storage.redirect.disable) instead of redirecting to S3."""
    scenarios: list[Scenario] = []
    small: list[tuple[str, str, float | None, Callable[[Seeded], SmallRequest]]] = [
        ("manifest-get", "manifest GET by tag", 5.0, _manifest("GET")),
        ("manifest-head", "manifest HEAD by tag", None, _manifest("HEAD")),
        (
            "blob-head",
            "blob HEAD",
            None,
            lambda s: SmallRequest("HEAD", f"/v2/{IMAGE_REPO}/blobs/{s.layer_digest}"),
        ),
        (
            "tags-list",
            "tags list (100 tags)",
            None,
            lambda s: SmallRequest("GET", f"/v2/{IMAGE_REPO}/tags/list"),
        ),
    ]
    for key, label, target, make_request in small:
        scenarios.append(
            Scenario(
                f"ha-{key}", f"{label} c=64", "req/s", target, _small(make_request), target_reference="2.8.2"
            )
        )
    for size, name in ((MIB, "1 MiB"), (64 * MIB, "64 MiB")):
        for concurrency in (1, 8):
            scenarios.append(
                Scenario(
                    f"ha-pull-redirect-{size // MIB}m-c{concurrency}",
                    f"pull {name} c={concurrency}, 307 to S3 followed",
                    "MiB/s",
                    None,
                    _transfer(_pull(size, follow=True), concurrency),
                )
            )
            scenarios.append(
                Scenario(
                    f"ha-pull-proxied-{size // MIB}m-c{concurrency}",
                    f"pull {name} c={concurrency}, proxied by dockyard",
                    "MiB/s",
                    None,
                    _transfer(_pull(size), concurrency),
                    candidate=proxied,
                )
            )
    for size, name in ((MIB, "1 MiB"), (64 * MIB, "64 MiB")):
        for concurrency in (1, 8):
            scenarios.append(
                Scenario(
                    f"ha-push-{size // MIB}m-c{concurrency}",
                    f"push {name} POST+PUT c={concurrency}",
                    "MiB/s",
                    None,
                    _transfer(_push(size, "post-put"), concurrency),
                )
            )
    return scenarios
