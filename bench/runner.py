"""Run every scenario on every server in alternation (2.8.2, v3.1.1, dockyard, 2.8.2, ...), sampling their
memory throughout."""

from __future__ import annotations

import os
import platform
import shutil
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
        outcomes = []
        for scenario in scenarios:
            measured_references = [] if scenario.candidate_only else references
            outcome = ScenarioOutcome(scenario, {server.name: [] for server in measured_references})
            contender = alternates[scenario.candidate] if scenario.candidate else candidate
            for round_number in range(1, rounds + 1):
                progress(f"{scenario.label}  round {round_number}/{rounds}")
                for reference in measured_references:
                    outcome.references[reference.name].append(
                        measure_round(scenario, reference, seeded[reference.name], settings, progress)
                    )
                outcome.candidate.append(
                    measure_round(scenario, contender, seeded[contender.name], settings, progress)
                )
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
        f"at c={settings.connections}; "
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
