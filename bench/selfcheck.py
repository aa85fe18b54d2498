"""`--self-check`: every scenario against the do-nothing registry, to show the load generator's ceiling.

If a figure for a real server comes near its ceiling here, the bench measured itself, not the server.
Transfers run on both engines, so the default engine is the faster one on this machine.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.engines import ENGINES
from bench.runner import Progress
from bench.scenarios import RunSettings, Scenario
from bench.seed import seed
from bench.servers import ServerAuth, start_nullserver


def self_check(
    scenarios: list[Scenario],
    settings: RunSettings,
    workdir: Path,
    progress: Progress,
    auth: ServerAuth | None = None,
) -> None:
    """`auth`: the credentials the (auth) scenarios send; the null server takes any and checks none."""
    server = start_nullserver(workdir / "null")
    server.auth = auth
    try:
        seeded = seed(server.host, server.port, minimal=auth is not None)
        table = Table(
            title="load generator ceiling (null registry: stores nothing, serves zeros)",
            caption="cores = CPU the load generator (or wrk/ab) used; the null server is Python too, so for "
            "small requests this is a floor of wrk/ab's ceiling, not the ceiling itself.",
            caption_justify="left",
        )
        table.add_column("scenario")
        table.add_column("unit", justify="right")
        for engine in ENGINES:
            table.add_column(engine, justify="right")
            table.add_column("cores", justify="right")
        table.add_column("errors", justify="right")
        for scenario in scenarios:
            progress(f"self-check: {scenario.label}")
            engines = list(ENGINES) if scenario.unit == "MiB/s" else [settings.engine]
            cells, errors = [], 0
            for engine in ENGINES:
                if engine not in engines:
                    cells += ["", ""]
                    continue
                measured = scenario.measure(server, seeded, _with_engine(settings, engine))
                errors += measured.errors
                cells += [f"{measured.value:,.0f}", f"{measured.client_cores:.2f}"]
            table.add_row(scenario.label, scenario.unit, *cells, str(errors), style="red" if errors else None)
        Console(width=140).print(table)
    finally:
        server.stop()


def _with_engine(settings: RunSettings, engine: str) -> RunSettings:
    return RunSettings(
        engine, settings.transfer_seconds, settings.small_seconds, settings.connections, settings.small_tool
    )
