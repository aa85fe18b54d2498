"""`python -m bench --gc`: online garbage collection under load (docs/gc.md).

Fills a dockyard with 20,000 manifests of 5 blobs each (100,000 blobs), half of the manifests untagged
(so half the blobs unreferenced once they go), all made to look 5 hours old; rows are written in bulk
and the small blob files straight into storage (pushing 100k blobs over HTTP would take hours here).
Then it measures manifest GETs by tag (wrk, rotating over 2,000 tags) without GC, and again while
`GarbageCollector.run(delete_untagged=True)` runs, and reports the GC's duration and bytes freed, the
CPU it took per deleted manifest and blob (the collector's process; on PostgreSQL the database's too),
and the GET p99 without and during GC. On a shared machine the CPU figures are the steady ones: wall
time and p99 move with whatever else runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.runner import stopping
from bench.servers import Server, start_dockyard
from bench.smallrequests import WRK, SmallResult, parse_wrk_report

REPOSITORIES = 20
MANIFESTS = 20_000
BLOBS_PER_MANIFEST = 5
ROWS_PER_INSERT = 5_000
ROTATED_TAGS = 2_000
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
TARGET_SECONDS = 60.0
TARGET_P99_RATIO = 2.0


@dataclass
class PhaseCPU:
    """CPU seconds one phase of the GC took: its process (user + system, every thread) and, on
    PostgreSQL, the database server (all of its processes: the collector's connections, and the GETs'
    if any reach it; manifest GETs by tag are cache hits)."""

    user: float = 0.0
    system: float = 0.0
    database: float | None = None

    @property
    def collector(self) -> float:
        return self.user + self.system

    def per(self, count: int) -> str:
        if not count:
            return "-"
        text = (
            f"{self.collector / count * 1000:.3f} ms (user {self.user / count * 1000:.3f}, "
            f"system {self.system / count * 1000:.3f})"
        )
        if self.database is not None:
            text += f" + {self.database / count * 1000:.3f} ms database"
        return text


@dataclass
class GCAloneResult:
    """`--gc-alone`: the collection of the seeded set with nothing else running (no server, no wrk)."""

    database: str
    manifests: int
    seed_seconds: float
    gc_seconds: float
    manifests_deleted: int
    blobs_deleted: int
    manifest_cpu: PhaseCPU
    blob_cpu: PhaseCPU
    load_average: tuple[float, float, float]  # when the GC started

    def lines(self) -> list[str]:
        load = ", ".join(f"{value:.2f}" for value in self.load_average)
        return [
            f"GC alone on {self.database}: {self.manifests} manifests, "
            f"{self.manifests * BLOBS_PER_MANIFEST} blobs (seeded in {self.seed_seconds:.0f} s)",
            f"  GC: {self.gc_seconds:.1f} s, deleted {self.manifests_deleted} manifests and "
            f"{self.blobs_deleted} blobs; load average {load} when it started",
            f"  GC CPU per deleted manifest: {self.manifest_cpu.per(self.manifests_deleted)}",
            f"  GC CPU per deleted blob: {self.blob_cpu.per(self.blobs_deleted)}",
        ]


@dataclass
class GCBenchResult(GCAloneResult):
    """The collection with the server answering manifest GETs around it (wrk)."""

    bytes_freed: int
    without: SmallResult  # before GC
    during: SmallResult
    after: SmallResult  # without GC again: the machine is shared, so two baselines bracket the run
    # The server's threads' time waiting for a CPU (schedstat run_delay) per request, in microseconds,
    # before / during / after GC: what the collector's CPU costs the GETs, less noisy than their p99.
    waits_us: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def lines(self) -> list[str]:
        baseline = min(self.without.p99_ms, self.after.p99_ms)  # the stricter comparison
        ratio = self.during.p99_ms / baseline if baseline else float("inf")
        blobs = self.manifests * BLOBS_PER_MANIFEST
        without, during = self.without, self.during
        load = ", ".join(f"{value:.2f}" for value in self.load_average)
        return [
            f"GC bench on {self.database}: {self.manifests} manifests, {blobs} blobs (seeded in "
            f"{self.seed_seconds:.0f} s)",
            f"  GC: {self.gc_seconds:.1f} s (target < {TARGET_SECONDS:.0f} s), deleted "
            f"{self.manifests_deleted} manifests and {self.blobs_deleted} blobs, "
            f"{self.bytes_freed} bytes freed; load average {load} when it started",
            f"  GC CPU per deleted manifest: {self.manifest_cpu.per(self.manifests_deleted)}, "
            f"per deleted blob: {self.blob_cpu.per(self.blobs_deleted)}",
            f"  GC CPU in all: {self.manifest_cpu.collector + self.blob_cpu.collector:.1f} s (manifests "
            f"{self.manifest_cpu.collector:.1f} s, blobs {self.blob_cpu.collector:.1f} s)",
            "  server's wait for a CPU per request (its threads' run_delay) without / during / after GC: "
            + " / ".join(f"{wait:.0f}" for wait in self.waits_us)
            + " us",
            f"  manifest GET p99 without GC: {without.p99_ms:.1f} ms "
            f"({without.requests_per_second:.0f} req/s, {without.errors} errors)",
            f"  manifest GET p99 during GC:  {during.p99_ms:.1f} ms "
            f"({during.requests_per_second:.0f} req/s, {during.errors} errors)",
            f"  manifest GET p99 after GC:   {self.after.p99_ms:.1f} ms "
            f"({self.after.requests_per_second:.0f} req/s, {self.after.errors} errors)",
            f"  p99 ratio during / best of without: {ratio:.2f} (target < {TARGET_P99_RATIO:.0f})",
        ]


def _database(stack: ExitStack, database: str) -> tuple[dict[str, Any], int | None]:
    """The config sections for `database` (a throwaway PostgreSQL cluster, stopped with `stack`, or the
    default SQLite) and the PID of the database server whose CPU counts (None for SQLite)."""
    if database != "postgresql":
        return {}, None
    from tests.support.postgres import start_postgres  # the suite's launcher, as bench/ha.py

    cluster = start_postgres()
    stack.callback(cluster.stop)
    return {"database": {"url": cluster.create_database("gcbench")}}, cluster.process.pid


def run_gc_bench(
    workdir: Path,
    workers: int,
    database: str,
    seconds: float,
    progress: Callable[[str], None],
    manifests: int = MANIFESTS,
    seeded: Path | None = None,
    shared_session: bool = True,
) -> GCBenchResult:
    """`shared_session`: the server runs in this process's session, where the collector runs, and
    wrk in one of its own: Linux's autogroups (`sched_autogroup_enabled`) give each session one share
    of the CPU and rank threads by niceness only within it. So the collector's thread at nice +10
    ranks below the server's workers, as it does in `serve`, whose job runner is forked beside its
    workers. False: the server in a session of its own and the collector in the bench's, with wrk
    (before 2026-12-07): the collector then ranks below wrk only, and takes the CPU from the server
    as an equal. `seeded`: see `_copy_seeded`."""
    with ExitStack() as stack:
        sections, database_pid = _database(stack, database)
        settings = _write_config(workdir, sections)
        started = time.monotonic()
        if seeded is None:
            progress(f"gc bench: seeding {manifests} manifests and {manifests * BLOBS_PER_MANIFEST} blobs")
            tags = _seed(settings, manifests)
        else:
            tags = _copy_seeded(seeded, workdir, manifests, progress)
        seed_seconds = time.monotonic() - started
        # The server runs on the datadir (and database) just seeded: _write_config names the same ones.
        server = stopping(
            stack,
            start_dockyard(workdir / "dockyard", workers, sections=sections, new_session=not shared_session),
        )
        paths = [f"/v2/{repo}/manifests/{tag}" for repo, tag in tags[:ROTATED_TAGS]]
        _wrk_for(server, paths, 5)  # warm-up: the workers' caches and connections, not measured
        progress(f"gc bench: manifest GETs for {seconds:g} s without GC")
        waited = _waited(server.process.pid)
        without = _wrk_for(server, paths, seconds)
        waits = [_per_request_us(_waited(server.process.pid) - waited, without)]
        progress("gc bench: manifest GETs while GC runs")
        with _wrk_running(server, paths) as stop_wrk:
            waited = _waited(server.process.pid)
            time.sleep(1.0)
            load_average = os.getloadavg()
            report, cpu = _collect(settings, database_pid)
            during = stop_wrk()
            waits.append(_per_request_us(_waited(server.process.pid) - waited, during))
        progress(f"gc bench: manifest GETs for {seconds:g} s after GC")
        waited = _waited(server.process.pid)
        after = _wrk_for(server, paths, seconds)
        waits.append(_per_request_us(_waited(server.process.pid) - waited, after))
        return GCBenchResult(
            database,
            manifests,
            seed_seconds,
            report.duration_seconds,
            report.manifests_deleted,
            report.blobs_deleted,
            cpu["manifests"],
            cpu["blobs"],
            load_average,
            report.bytes_freed,
            without,
            during,
            after,
            (waits[0], waits[1], waits[2]),
        )
    raise AssertionError("unreachable")


def run_gc_alone(
    workdir: Path, database: str, progress: Callable[[str], None], manifests: int = MANIFESTS
) -> GCAloneResult:
    """Seeds the bench's set and collects it once, nothing else running: the collector's CPU per
    deleted manifest and blob (user and system apart), which holds on a loaded machine where wall
    time does not."""
    with ExitStack() as stack:
        sections, database_pid = _database(stack, database)
        settings = _write_config(workdir, sections)
        progress(f"gc alone: seeding {manifests} manifests and {manifests * BLOBS_PER_MANIFEST} blobs")
        started = time.monotonic()
        _seed(settings, manifests)
        seed_seconds = time.monotonic() - started
        load_average = os.getloadavg()
        report, cpu = _collect(settings, database_pid)
        return GCAloneResult(
            database,
            manifests,
            seed_seconds,
            report.duration_seconds,
            report.manifests_deleted,
            report.blobs_deleted,
            cpu["manifests"],
            cpu["blobs"],
            load_average,
        )
    raise AssertionError("unreachable")


def _copy_seeded(
    seeded: Path, workdir: Path, manifests: int, progress: Callable[[str], None]
) -> list[tuple[str, str]]:
    """`--gc-seeded DIR` (SQLite): the set seeded into DIR once (the first time), then copied into
    each run's data dir (`cp -a`), where seeding the full set takes minutes; the (repository, tag)
    of its live images, as `_seed` returns them."""
    marker = seeded / f"seeded-{manifests}"
    if not marker.exists():
        progress(f"gc bench: seeding {manifests} manifests into {seeded} (once)")
        _seed(_write_config(seeded, {}), manifests)
        subprocess.run(["sync"], check=True)
        marker.write_text("complete\n")
    progress(f"gc bench: copying the set seeded in {seeded}")
    subprocess.run(["cp", "-a", str(seeded / "dockyard"), str(workdir)], check=True)
    subprocess.run(["sync"], check=True)
    return [(f"gcbench/repo-{n % REPOSITORIES:02d}", f"t{n}") for n in range(0, manifests, 2)]


def _write_config(workdir: Path, sections: dict[str, Any]) -> Any:
    """The settings the server will run on (start_dockyard writes the same datadir and sections)."""
    import yaml

    from dockyard.config.loader import load_settings

    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "seed-config.yml"
    config = {"datadir": str(workdir / "dockyard" / "data"), "auth": {"enabled": False}, **sections}
    config_path.write_text(yaml.safe_dump(config))
    return load_settings(config_path, {})


def _seed(settings: Any, manifests: int) -> list[tuple[str, str]]:
    """Rows in bulk and small files straight into storage; returns the (repository, tag) of live images."""
    from sqlalchemy import insert, select

    from dockyard.app import build_services
    from dockyard.projects.models import ProjectRow
    from dockyard.registry.models import Manifest, ManifestReference, Repository, RepositoryBlob, Tag
    from dockyard.storage.models import Blob

    services = build_services(settings)
    storage = Path(settings.storage_root)
    old = datetime.now(UTC) - timedelta(hours=5)
    try:
        with services.db.write() as connection:
            connection.execute(
                insert(ProjectRow).values(name="gcbench", public=True, created_at=old, updated_at=old)
            )
            project_id = connection.scalar(select(ProjectRow.id).where(ProjectRow.name == "gcbench"))
            connection.execute(
                insert(Repository),
                [
                    {"name": f"gcbench/repo-{n:02d}", "created_at": old, "project_id": project_id}
                    for n in range(REPOSITORIES)
                ],
            )
            repository_ids = dict(connection.execute(select(Repository.name, Repository.id)).tuples().all())
        tags: list[tuple[str, str]] = []
        for start in range(0, manifests, ROWS_PER_INSERT // BLOBS_PER_MANIFEST):
            rows = _manifest_rows(
                start, min(manifests, start + ROWS_PER_INSERT // BLOBS_PER_MANIFEST), storage
            )
            with services.db.write() as connection:
                blobs = [blob for row in rows for blob in row["blobs"]]
                connection.execute(
                    insert(Blob), [{"digest": d, "size": s, "created_at": old} for d, s in blobs]
                )
                connection.execute(
                    insert(RepositoryBlob),
                    [
                        {"repository_id": repository_ids[row["repo"]], "digest": d, "created_at": old}
                        for row in rows
                        for d, _ in row["blobs"]
                    ],
                )
                for row in rows:
                    row["id"] = connection.execute(
                        insert(Manifest).values(
                            repository_id=repository_ids[row["repo"]],
                            digest=row["digest"],
                            media_type=MANIFEST_TYPE,
                            size=len(row["body"]),
                            content=row["body"],
                            created_at=old,
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
                connection.execute(
                    insert(ManifestReference),
                    [
                        {"manifest_id": row["id"], "digest": d, "kind": "blob"}
                        for row in rows
                        for d, _ in row["blobs"]
                    ],
                )
                live = [row for row in rows if row["tag"]]
                connection.execute(
                    insert(Tag),
                    [
                        {
                            "repository_id": repository_ids[row["repo"]],
                            "name": row["tag"],
                            "manifest_id": row["id"],
                            "updated_at": old,
                        }
                        for row in live
                    ],
                )
            tags += [(row["repo"], row["tag"]) for row in live]
        if services.db.dialect == "postgresql":
            with services.db.engine.connect() as connection:  # autovacuum's statistics, now
                connection.exec_driver_sql("ANALYZE")
        return tags
    finally:
        services.close()


def _manifest_rows(start: int, end: int, storage: Path) -> list[dict[str, Any]]:
    """Manifests start..end-1: even numbers tagged (live), odd ones untagged (garbage)."""
    rows = []
    for number in range(start, end):
        blobs = [_write_blob(storage, os.urandom(64 + 64 * index)) for index in range(BLOBS_PER_MANIFEST)]
        document = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": blobs[0][0], "size": blobs[0][1]},
            "layers": [{"mediaType": LAYER_TYPE, "digest": d, "size": s} for d, s in blobs[1:]],
        }
        body = json.dumps(document, separators=(",", ":")).encode()
        rows.append(
            {
                "repo": f"gcbench/repo-{number % REPOSITORIES:02d}",
                "tag": f"t{number}" if number % 2 == 0 else None,
                "digest": f"sha256:{hashlib.sha256(body).hexdigest()}",
                "body": body,
                "blobs": blobs,
            }
        )
    return rows


def _write_blob(storage: Path, data: bytes) -> tuple[str, int]:
    encoded = hashlib.sha256(data).hexdigest()
    directory = storage / "blobs" / "sha256" / encoded[:2] / encoded
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").write_bytes(data)
    return f"sha256:{encoded}", len(data)


def _collect(settings: Any, database_pid: int | None) -> tuple[Any, dict[str, PhaseCPU]]:
    from dockyard.app import build_services
    from dockyard.gc.interfaces import GCOptions
    from dockyard.gc.services import GarbageCollector

    cpu = {"manifests": PhaseCPU(), "blobs": PhaseCPU()}

    class Measured(GarbageCollector):
        """The collector, with the CPU of its two sweeps counted (the bench's only use of its insides)."""

        def _sweep_manifests(self, *args: Any, **kwargs: Any) -> None:
            with _counting(cpu["manifests"], database_pid):
                super()._sweep_manifests(*args, **kwargs)

        def _sweep_blobs(self, *args: Any, **kwargs: Any) -> None:
            with _counting(cpu["blobs"], database_pid):
                super()._sweep_blobs(*args, **kwargs)

    services = build_services(settings, migrate=False)
    try:
        collector = Measured(services.db, services.driver, services.feed)
        report = collector.run(GCOptions(delete_untagged=True, min_age=timedelta(hours=1)), _Progress())
        return report, cpu
    finally:
        services.close()


@contextmanager
def _counting(into: PhaseCPU, database_pid: int | None) -> Iterator[None]:
    """Adds the CPU this process (every thread: the GC runs here, the bench's other work waits) and
    the database server used meanwhile."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    database_before = _process_tree_cpu(database_pid) if database_pid else None
    try:
        yield
    finally:
        after = resource.getrusage(resource.RUSAGE_SELF)
        into.user += after.ru_utime - before.ru_utime
        into.system += after.ru_stime - before.ru_stime
        if database_pid and database_before is not None:
            into.database = (into.database or 0.0) + _process_tree_cpu(database_pid) - database_before


def _waited(pid: int) -> int:
    """Nanoseconds the threads of a process and its descendants (the server's workers and job runner)
    have waited on a run queue (the second field of /proc/PID/task/TID/schedstat)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            threads = os.listdir(f"/proc/{current}/task")
        except OSError:  # gone meanwhile
            continue
        for thread in threads:
            try:
                with open(f"/proc/{current}/task/{thread}/schedstat") as file:
                    total += int(file.read().split()[1])
                with open(f"/proc/{current}/task/{thread}/children") as file:
                    pending += [int(child) for child in file.read().split()]
            except (OSError, IndexError, ValueError):
                continue
    return total


def _per_request_us(nanoseconds: int, result: SmallResult) -> float:
    return nanoseconds / 1000 / result.requests if result.requests else 0.0


def _process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its exited children (reaped) and its running children: PostgreSQL's
    postmaster and its backends. A backend that exits meanwhile counts once reaped (the collector's
    pooled connections stay open through its run)."""
    ticks = os.sysconf("SC_CLK_TCK")

    def fields(stat_pid: str) -> list[str]:
        with open(f"/proc/{stat_pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()

    own = fields(str(pid))
    total = sum(int(value) for value in own[11:15])  # utime, stime, cutime, cstime
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == str(pid):
            continue
        try:
            stat = fields(entry)
        except OSError:  # gone meanwhile
            continue
        if int(stat[1]) == pid:  # its parent
            total += int(stat[11]) + int(stat[12])
    return total / ticks


class _Progress:
    """Prints the GC's progress every few seconds (to stderr, like the bench's other progress)."""

    def __init__(self) -> None:
        self._last = 0.0

    def log(self, line: str) -> None:
        print(f"gc bench: {line}", file=sys.stderr, flush=True)

    def progress(self, done: int, total: int | None = None) -> None:
        if time.monotonic() - self._last >= 5:
            self._last = time.monotonic()
            print(f"gc bench: GC at {done}/{total}", file=sys.stderr, flush=True)

    def check_cancelled(self) -> None:
        pass


def _lua(paths: list[str]) -> str:
    quoted = ",".join(f'"{path}"' for path in paths)
    return (
        f"local paths = {{{quoted}}}\nlocal i = 0\n"
        f'wrk.headers["Accept"] = "{MANIFEST_TYPE}"\n'
        'request = function()\n  i = i % #paths + 1\n  return wrk.format("GET", paths[i])\nend\n'
    )


def _wrk_argv(server: Server, script: str, seconds: float) -> list[str]:
    return [WRK, "-t2", "-c32", f"-d{seconds:g}s", "--latency", "--timeout", "30s", "-s", script, server.url]


def _wrk_for(server: Server, paths: list[str], seconds: float) -> SmallResult:
    with _script(paths) as script:
        completed = subprocess.run(
            _wrk_argv(server, script, seconds),
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
            start_new_session=server.shares_session,  # then the load generator has a share of its own
        )
    return parse_wrk_report(completed.stdout)


@contextmanager
def _wrk_running(server: Server, paths: list[str]) -> Iterator[Callable[[], SmallResult]]:
    """wrk runs until the caller stops it; wrk prints its report when interrupted (SIGINT)."""
    with _script(paths) as script:
        process = subprocess.Popen(
            _wrk_argv(server, script, 3600),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=server.shares_session,  # then the load generator has a share of its own
        )

        def stop() -> SmallResult:
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=60)
            return parse_wrk_report(out)

        try:
            yield stop
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@contextmanager
def _script(paths: list[str]) -> Iterator[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(_lua(paths))
    try:
        yield file.name
    finally:
        os.unlink(file.name)
