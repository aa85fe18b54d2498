"""Run every scenario on every server in alternation (2.8.2, v3.1.1, dockyard, 2.8.2, ...), sampling their
memory throughout."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench.procs import PeakRss, RssSampler
from bench.report import ScenarioOutcome
from bench.scenarios import Measurement, RunSettings, Scenario
from bench.seed import Seeded, seed
from bench.servers import Server

Progress = Callable[[str], None]
MIB = 1 << 20


def blob_files(server: Server) -> set[Path]:
    """The blob files in the server's data directory (`<workdir>/data`): files named `data` below a
    directory named `blobs` -- dockyard's `storage/blobs/sha256/<xx>/<hex>/data`, distribution's
    `docker/registry/v2/blobs/sha256/<xx>/<hex>/data`. None for a server whose blobs are elsewhere
    (dockyard on S3: `--backend ha`)."""
    root = server.workdir / "data" if server.workdir is not None else None
    found: set[Path] = set()
    if root is None or not root.is_dir():
        return found
    for directory, _, names in os.walk(root):
        if "data" in names and "blobs" in Path(directory).relative_to(root).parts:
            found.add(Path(directory) / "data")
    return found


def forget_pushed(server: Server, kept: set[Path]) -> int:
    """Delete the blob files a push round left in the server's data directory (all but `kept`, those
    seeded), with their directories, and have the filesystem write out and trim what that freed, before
    the next round runs: the disk then never holds more than one round's pushes. The host's
    thin-provisioned disk answered ENOSPC when the push rows piled up tens of GB (every server erred,
    with df showing 64 GB free). The pushed blobs are never read again; the servers keep their records
    of them (dockyard's rows, distribution's links and descriptor cache), which no later scenario uses.
    The bytes freed."""
    freed = 0
    for path in blob_files(server) - kept:
        try:
            freed += path.stat().st_size
            path.unlink()
            path.parent.rmdir()
        except OSError:
            continue
    if freed and server.workdir is not None:
        # syncfs(2) of the data's filesystem: the deletions (and their discards) happen now, outside
        # the next measured run, for every server alike.
        subprocess.run(["sync", "-f", str(server.workdir)], check=False)
    return freed


def measure_round(
    scenario: Scenario, server: Server, seeded: Seeded, settings: RunSettings, progress: Progress
) -> Measurement:
    if server.process.poll() is not None:
        raise RuntimeError(f"{server.name} died (exit {server.process.returncode}):\n{server.log_tail()}")
    try:
        result = scenario.measure(server, seeded, settings)
    except Exception as error:
        message = f"{scenario.label} on {server.name} failed: {error}"
        raise RuntimeError(f"{message}\n{server.log_tail()}") from error
    progress(
        f"  {server.name:<12} {result.value:>10,.1f} {scenario.unit}"
        + (f"  p99 {result.p99_ms:.1f} ms" if result.p99_ms is not None else "")
        + (
            f"  server CPU {result.server_cpu_ms_per_mib:.2f} ms/MiB"
            if result.server_cpu_ms_per_mib is not None
            else ""
        )
        + (
            f"  server CPU {result.server_cpu_ms * 1000:.1f} µs/request"
            if result.server_cpu_ms is not None
            else ""
        )
        + (f"  CPUs idle {result.idle_share:.0%}" if result.idle_share is not None else "")
        + (f"  errors {result.errors}" if result.errors else "")
    )
    return result


def run_side_by_side(
    scenarios: list[Scenario],
    references: list[Server],
    candidate: Server,
    settings: RunSettings,
    rounds: int,
    progress: Progress,
    alternates: dict[str, Server] | None = None,
    seeder: Callable[[Server], Seeded] | None = None,
) -> tuple[list[ScenarioOutcome], dict[str, PeakRss]]:
    """`references`: the servers every figure is divided by (distribution 2.8.2, v3.1.1); `alternates`:
    other candidate servers that scenarios may name (Scenario.candidate); `seeder` seeds one server
    (default: the full seed, no credentials)."""
    alternates = alternates or {}
    servers = [*references, candidate, *alternates.values()]
    samplers = {server.name: RssSampler(server.process.pid).start() for server in servers}
    try:
        seeded = {}
        for server in servers:
            progress(f"seeding {server.name} …")
            try:
                seeded[server.name] = seeder(server) if seeder else seed(server.host, server.port)
            except Exception as error:
                raise RuntimeError(f"seeding {server.name} failed: {error}\n{server.log_tail()}") from error
        kept = {server.name: blob_files(server) for server in servers}  # the seeded blobs

        def measure(scenario: Scenario, server: Server) -> Measurement:
            result = measure_round(scenario, server, seeded[server.name], settings, progress)
            if scenario.pushes:
                freed = forget_pushed(server, kept[server.name])
                if freed:
                    progress(f"  {server.name:<12} deleted {freed / MIB:,.0f} MiB of pushed blobs")
            return result

        outcomes = []
        for scenario in scenarios:
            measured_references = [] if scenario.candidate_only else references
            outcome = ScenarioOutcome(scenario, {server.name: [] for server in measured_references})
            contender = alternates[scenario.candidate] if scenario.candidate else candidate
            for round_number in range(1, rounds + 1):
                progress(f"{scenario.label}  round {round_number}/{rounds}")
                for reference in measured_references:
                    outcome.references[reference.name].append(measure(scenario, reference))
                outcome.candidate.append(measure(scenario, contender))
            outcomes.append(outcome)
    finally:
        peaks = {name: sampler.stop() for name, sampler in samplers.items()}
    return outcomes, peaks


def machine_caption(settings: RunSettings, rounds: int, workers: int, candidate: str, source: str) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{when}; {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, load average {load}; load "
        f"generator, wrk/ab and the servers share these CPUs. {rounds} interleaved rounds, median shown; "
        f"ratio = median of per-round {candidate}/reference ratios. "
        f"Transfers {settings.transfer_seconds:g} s per run "
        f"(engine: {settings.engine}), small requests {settings.small_seconds:g} s "
        f"at c={settings.connections}{' (all on ab)' if settings.small_tool == 'ab' else ''}; "
        f"{candidate} workers: {workers}, code: {source}. MiB/s counts blob payload bytes."
    )


class WorkDir:
    """A fresh scratch directory for data dirs and logs, removed afterwards unless asked to keep it."""

    def __init__(self, keep: bool) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
        self.keep = keep

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


def stopping(stack: ExitStack, server: Server) -> Server:
    stack.callback(server.stop)
    return server
