"""`python -m bench --scale`: dockyard and distribution v3.1.1 holding N repositories (issue 18).

Both servers are seeded with the same content before they start (bench/scalelayout.py): one small image
in N repositories (`--scale-repos`, 50,000 by default) plus one repository with `--scale-tags` tags.
dockyard through its own services, without HTTP (bench/scaleseed.py), distribution as the files its
filesystem driver writes. Then, in interleaved rounds (v3.1.1, dockyard, v3.1.1, ...):

- manifest GET by tag and blob HEAD, each request naming a different random repository (c=64,
  bench/randomload.py): what many nodes pulling different images do, past any cache;
- writes of small requests: 8 clients each pushing the image into new repositories by cross-repository
  mounts (config, layer) and a manifest PUT;

with the servers' CPU per request (their whole process trees, from /proc). Then each server is
restarted a few times and the seconds until `/v2/` answers are taken, and dockyard's audit tables are
measured after the pulls. See docs/benchmarks.md, "At scale".
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.engines import ENGINES
from bench.procs import tree_cpu_seconds
from bench.report import ScenarioOutcome
from bench.scalelayout import OCI_MANIFEST, ScaleImage, repository_name, write_distribution_layout
from bench.scaleseed import BASE, TAGGED
from bench.scenarios import Measurement, Scenario
from bench.seed import MANIFEST_ACCEPT
from bench.servers import (
    DISTRIBUTION_3,
    Server,
    dockyard_environment,
    relaunch,
    start_distribution,
    start_dockyard,
    write_dockyard_config,
)
from bench.wire import Operation, Request

Progress = Callable[[str], None]
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ScaleSettings:
    repositories: int = 50_000
    tags: int = 10_000
    rounds: int = 3
    seconds: float = 5.0  # each read run
    write_seconds: float = 5.0
    connections: int = 64
    write_clients: int = 8
    startups: int = 3
    database: str = "sqlite"  # dockyard's: sqlite | postgresql
    workers: int = 2
    source: Path | None = None
    cache_memory: str | None = None  # dockyard's storage.cache.memory; "0": every read misses
    logs: Path | None = None  # where the servers' logs are kept (the work dir goes after the run)


@dataclass
class Row:
    key: str
    label: str
    unit: str
    target: float | None
    outcome: ScenarioOutcome = field(init=False)

    def __post_init__(self) -> None:
        self.outcome = ScenarioOutcome(Scenario(self.key, self.label, self.unit, self.target, _unused), {})


def _unused(*args: object) -> Measurement:
    raise AssertionError("scale rows are measured by bench/scale.py")


# --- one measurement ----------------------------------------------------------------------------------
def random_reads(server: Server, method: str, template: str, settings: ScaleSettings) -> Measurement:
    headers = [f"Accept: {MANIFEST_ACCEPT}"] if "/manifests/" in template else []
    argv = [
        sys.executable,
        "-m",
        "bench.randomload",
        server.host,
        str(server.port),
        method,
        template,
        str(settings.repositories),
        str(settings.seconds),
        str(settings.connections),
        *headers,
    ]
    cpu = tree_cpu_seconds(server.process.pid)
    completed = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    cpu = tree_cpu_seconds(server.process.pid) - cpu
    result = json.loads(completed.stdout)
    requests = max(int(result["requests"]), 1)
    kinds = [f"{count} x {kind}" for kind, count in result["error_kinds"].items()]
    notes = [", ".join(kinds), *result["error_samples"]] if result["errors"] else []
    measured = Measurement(result["requests_per_second"], result["errors"], result["p99_ms"], notes=notes)
    measured.server_cpu_ms = cpu / requests * 1000
    return measured


def _push_into(repository: str, image: ScaleImage) -> Operation:
    for digest in (image.config_digest, image.layer_digest):
        yield Request(
            "POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from={BASE}", {}, (), expect=(201,)
        )
    yield Request(
        "PUT",
        f"/v2/{repository}/manifests/latest",
        {"Content-Type": OCI_MANIFEST},
        (image.manifest,),
        expect=(201,),
    )
    return 0


def small_writes(
    server: Server, image: ScaleImage, round_number: int, settings: ScaleSettings
) -> Measurement:
    """Cross-repository pushes into new repositories: requests/s (3 requests a push)."""
    counter: Iterator[int] = iter(range(10**9))

    def push() -> Operation:
        return _push_into(f"scale/w{round_number}-{next(counter):07d}", image)

    cpu = tree_cpu_seconds(server.process.pid)
    result = ENGINES["threads"](
        server.host, server.port, push, settings.write_clients, settings.write_seconds
    )
    cpu = tree_cpu_seconds(server.process.pid) - cpu
    requests = 3 * result.operations
    samples = result.error_samples
    notes = [f"the first {len(samples)} below", *samples] if result.errors else []
    measured = Measurement(requests / result.seconds, result.errors, None, notes=notes)
    measured.server_cpu_ms = cpu / max(requests, 1) * 1000
    return measured


# --- seeding and servers ------------------------------------------------------------------------------
class Servers:
    """The servers under test by name; a restart replaces one. Stops them all on exit."""

    def __init__(self) -> None:
        self.by_name: dict[str, Server] = {}

    def add(self, server: Server) -> Server:
        self.by_name[server.name] = server
        return server

    def restart(self, name: str) -> float:
        self.by_name[name], seconds = relaunch(self.by_name[name])
        return seconds

    def stop(self) -> None:
        for server in self.by_name.values():
            server.stop()


def start_v3(workdir: Path, image: ScaleImage, settings: ScaleSettings, progress: Progress) -> Server:
    home = workdir / "distribution-v3"
    started = time.monotonic()
    names = [repository_name(index) for index in range(settings.repositories)]
    write_distribution_layout(home / "data", image, [BASE, *names], TAGGED, settings.tags)
    progress(f"seeded {DISTRIBUTION_3}'s files in {time.monotonic() - started:.0f} s")
    return start_distribution(home, version=DISTRIBUTION_3)


def _database_sections(stack: ExitStack, settings: ScaleSettings) -> dict[str, Any]:
    if settings.database == "sqlite":
        return {}
    from tests.support.postgres import start_postgres  # the test suite's launcher: only when asked

    postgres = start_postgres()
    stack.callback(postgres.stop)
    if settings.logs is not None:  # before the cluster and its directory go (callbacks run last first)
        stack.callback(_keep_log, postgres.root / "postgres.log", settings.logs / "postgresql.log")
    return {"database": {"url": postgres.create_database("bench_scale")}}


def start_seeded_dockyard(
    stack: ExitStack, workdir: Path, settings: ScaleSettings, progress: Progress
) -> tuple[Server, dict[str, Any]]:
    """Seed through dockyard's services (bench/scaleseed.py), then serve; with the seeding's figures."""
    home = workdir / "dockyard"
    sections = _database_sections(stack, settings)
    if settings.cache_memory is not None:
        sections["storage"] = {"cache": {"memory": settings.cache_memory}}
    config = write_dockyard_config(home, settings.workers, sections=sections)
    env = {**os.environ, **dockyard_environment(settings.source)}
    if settings.source is not None:
        env["PYTHONPATH"] = f"{settings.source}{os.pathsep}{REPO_ROOT}"
    argv = [
        sys.executable,
        "-m",
        "bench.scaleseed",
        str(config[0]),
        str(settings.repositories),
        str(settings.tags),
    ]
    started = time.monotonic()
    completed = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"seeding dockyard failed:\n{completed.stderr[-3000:]}")
    seeding: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    progress(f"seeded dockyard through its services in {time.monotonic() - started:.0f} s: {seeding}")
    return start_dockyard(home, settings.workers, settings.source, config=config), seeding


# --- the run ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One measurement of one server: which row and round, and what it measured (its errors)."""

    label: str
    round_number: int
    server: str
    measured: Measurement


@dataclass
class ScaleResult:
    rows: list[Row]
    startup: dict[str, list[float]]
    seeding: dict[str, Any]
    audit: dict[str, Any]
    pulls: int  # manifest GETs dockyard answered during the run
    runs: list[Run] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)  # server name -> its kept log


def kept_logs(settings: ScaleSettings, names: list[str]) -> dict[str, Path]:
    """Where each server's log is kept (settings.logs), by server name; PostgreSQL's too if it ran."""
    if settings.logs is None:
        return {}
    kept = {name: settings.logs / f"{name.replace(' ', '-')}.log" for name in names}
    if settings.database == "postgresql":
        kept["PostgreSQL"] = settings.logs / "postgresql.log"
    return kept


def _keep_log(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.exists():
        destination.write_bytes(source.read_bytes())


def _mark(server: Server, text: str) -> None:
    """A line in the server's log (it appends too) saying which run starts, to find a run's errors."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    with server.log_path.open("a") as log:
        log.write(f"---- bench {stamp}Z: {text}\n")


def run_scale_bench(workdir: Path, settings: ScaleSettings, progress: Progress) -> ScaleResult:
    image = ScaleImage.build()
    servers = Servers()
    runs: list[Run] = []
    with ExitStack() as stack:
        if settings.logs is not None:  # once every server has stopped, failed run or not
            stack.callback(_keep_server_logs, servers, settings)
        stack.callback(servers.stop)
        v3 = servers.add(start_v3(workdir, image, settings, progress))
        dockyard, seeding = start_seeded_dockyard(stack, workdir, settings, progress)
        servers.add(dockyard)
        manifest = "/v2/scale/r-{n:06d}/manifests/latest"
        blob = "/v2/scale/r-{n:06d}/blobs/" + image.layer_digest
        reads = [
            Row("scale-manifest-get", "manifest GET by tag, random repository, c=64", "req/s", 1.5),
            Row("scale-blob-head", "blob HEAD, random repository, c=64", "req/s", 1.5),
        ]
        writes = Row("scale-writes", "cross-repository mounts + manifest PUT, 8 clients", "req/s", 1.0)
        pulls = 0
        for round_number in range(1, settings.rounds + 1):
            for row, method, template in ((reads[0], "GET", manifest), (reads[1], "HEAD", blob)):
                progress(f"{row.label}  round {round_number}/{settings.rounds}")
                for name in (v3.name, dockyard.name):
                    _mark(servers.by_name[name], f"{row.label}, round {round_number}")
                    measured = random_reads(servers.by_name[name], method, template, settings)
                    _keep(row, name, dockyard.name, measured, progress)
                    runs.append(Run(row.label, round_number, name, measured))
                    if name == dockyard.name and method == "GET":
                        pulls += int(measured.value * settings.seconds)
            progress(f"{writes.label}  round {round_number}/{settings.rounds}")
            for name in (v3.name, dockyard.name):
                _mark(servers.by_name[name], f"{writes.label}, round {round_number}")
                measured = small_writes(servers.by_name[name], image, round_number, settings)
                _keep(writes, name, dockyard.name, measured, progress)
                runs.append(Run(writes.label, round_number, name, measured))
        audit = audit_tables(workdir / "dockyard", settings)
        startup: dict[str, list[float]] = {v3.name: [], dockyard.name: []}
        for _ in range(settings.startups):
            for name in startup:
                _mark(servers.by_name[name], "restart, to time the start-up")
                startup[name].append(servers.restart(name))
                progress(f"start-up of {name}: {startup[name][-1]:.2f} s to /v2/")
    logs = kept_logs(settings, list(startup))
    return ScaleResult([*reads, writes], startup, seeding, audit, pulls, runs, logs)


def _keep_server_logs(servers: Servers, settings: ScaleSettings) -> None:
    for name, destination in kept_logs(settings, list(servers.by_name)).items():
        if name in servers.by_name:
            _keep_log(servers.by_name[name].log_path, destination)


def _keep(row: Row, name: str, candidate: str, measured: Measurement, progress: Progress) -> None:
    if name == candidate:
        row.outcome.candidate.append(measured)
    else:
        row.outcome.references.setdefault(name, []).append(measured)
    progress(
        f"  {name:<20} {measured.value:>10,.1f} {row.unit}"
        + (f"  p99 {measured.p99_ms:.1f} ms" if measured.p99_ms is not None else "")
        + f"  server CPU {measured.server_cpu_ms:.2f} ms/request"
        + (f"  errors {measured.errors}" if measured.errors else "")
    )


def audit_tables(home: Path, settings: ScaleSettings) -> dict[str, Any]:
    """Rows and bytes of dockyard's audit tables (SQLite only: PostgreSQL's are reported by psql)."""
    if settings.database != "sqlite":
        return {}
    import sqlite3

    connection = sqlite3.connect(home / "data" / "dockyard.db")
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'audit%'"
            )
        ]
        found: dict[str, Any] = {}
        for table in tables:
            rows = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            try:
                size = connection.execute(
                    "SELECT sum(pgsize) FROM dbstat WHERE name = ?", (table,)
                ).fetchone()[0]
            except sqlite3.OperationalError:  # no dbstat in this SQLite build
                size = None
            found[table] = {"rows": rows, "bytes": size}
        return found
    finally:
        connection.close()


# --- the report ---------------------------------------------------------------------------------------
def lines(result: ScaleResult, settings: ScaleSettings, caption: str) -> list[str]:
    """The result as Markdown: the table, then start-up, seeding and the audit tables."""
    reference = DISTRIBUTION_3
    out = [
        f"| scenario (N = {settings.repositories:,}) | unit | {reference} | dockyard | ratio | target | met "
        f"| p99 ms v3.1.1 / dockyard | server CPU ms/request v3.1.1 / dockyard | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in result.rows:
        outcome = row.outcome
        side = outcome.references.get(reference, [])
        ratio = outcome.ratio(reference)
        met = "" if row.target is None or ratio is None else ("yes" if ratio >= row.target else "no")
        if outcome.errors():
            met = "no (errors)"
        p99 = [_median(m.p99_ms for m in s) for s in (side, outcome.candidate)]
        cpu = [_median(m.server_cpu_ms for m in s) for s in (side, outcome.candidate)]
        figures = f"{_figure(outcome.median(side))} | {_figure(outcome.median(outcome.candidate))}"
        shown_ratio = "" if ratio is None else f"{ratio:.2f}x"
        target = "" if row.target is None else f"≥{row.target:g}x"
        out.append(
            f"| {row.label} | {row.unit} | {figures} | {shown_ratio} | {target} | {met} "
            f"| {_pair(p99, '.1f')} | {_pair(cpu, '.2f')} | {outcome.errors()} |"
        )
    starts = {name: statistics.median(values) for name, values in result.startup.items() if values}
    out.append(
        "| start-up until `/v2/` answers (median of "
        f"{settings.startups}) | s | {starts.get(reference, 0):.2f} | {starts.get('dockyard', 0):.2f} "
        f"| | ≤0.5 s | {'yes' if starts.get('dockyard', 99) <= 0.5 else 'no'} | | | |"
    )
    out += ["", caption, ""]
    seeding = ", ".join(
        f"{phase}: {figures['seconds']:.0f} s ({figures['cpu_seconds']:.0f} s CPU)"
        for phase, figures in result.seeding.items()
    )
    out.append(f"- dockyard seeded through its services: {seeding}.")
    for table, figures in result.audit.items():
        size = "" if figures["bytes"] is None else f", {figures['bytes'] / (1 << 20):.1f} MiB"
        out.append(f"- `{table}` after {result.pulls:,} GETs and the pushes: {figures['rows']:,} rows{size}.")
    return out + error_lines(result)


def error_lines(result: ScaleResult) -> list[str]:
    """Every run's errors (none is said too), with their kinds and samples, and where the logs are."""
    out = ["", "Errors by run (each run's start is marked `---- bench` in its server's log):", ""]
    for run in result.runs:
        measured = run.measured
        head = f"- {run.label}, round {run.round_number}, {run.server}: {measured.errors} errors"
        out.append(head + (f": {measured.notes[0]}" if measured.errors and measured.notes else ""))
        if measured.errors:
            out += [f"  - {sample}" for sample in measured.notes[1:]]
    if result.logs:
        out += ["", "Logs kept:", ""]
        out += [f"- {name}: `{path}`" for name, path in result.logs.items()]
    return out


def _median(values: Iterator[float | None] | Any) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _figure(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _pair(values: list[float | None], spec: str) -> str:
    return " / ".join("—" if value is None else format(value, spec) for value in values)
