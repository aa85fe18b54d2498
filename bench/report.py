"""The results as a rich table on stdout and, on request, the same table in Markdown.

Every row shows each reference server's figure, the candidate's, and the candidate's ratio to each
reference; the target is a ratio to one of them (Scenario.target_reference).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from bench.procs import PeakRss
from bench.scenarios import Measurement, Scenario

MIB = 1 << 20
RSS_TARGET_PER_PROCESS = 120 * MIB  # issue 10 (docs/benchmarks.md, "Memory")


@dataclass
class ScenarioOutcome:
    scenario: Scenario
    references: dict[str, list[Measurement]]  # reference server name -> one measurement per round
    candidate: list[Measurement] = field(default_factory=list)

    def median(self, side: list[Measurement]) -> float | None:
        return statistics.median(m.value for m in side) if side else None

    def ratio(self, reference: str) -> float | None:
        """Median of the per-round ratios candidate/reference (rounds ran back to back, so they pair)."""
        side = self.references.get(reference, [])
        if not side:  # candidate_only: nothing to divide by
            return None
        ratios = [c.value / b.value for b, c in zip(side, self.candidate, strict=True) if b.value > 0]
        return statistics.median(ratios) if ratios else None

    def errors(self) -> int:
        return sum(m.errors for side in [*self.references.values(), self.candidate] for m in side)

    def notes(self, cand_name: str) -> list[str]:
        found: list[str] = []
        for name, side in [*self.references.items(), (cand_name, self.candidate)]:
            for note in dict.fromkeys(n for m in side for n in m.notes):
                found.append(f"{self.scenario.label} — {name}: {note}")
        return found


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _short(name: str) -> str:
    """A reference's name as the target column shows it: `distribution v3.1.1` -> `v3.1.1`."""
    return name.removeprefix("distribution ")


def _target_and_met(outcome: ScenarioOutcome, references: list[str]) -> tuple[str, str]:
    """The target as shown and whether it was met ("" when the scenario has none)."""
    scenario = outcome.scenario
    if scenario.target is None:
        return "", ""
    if scenario.candidate_only:  # an absolute figure: the candidate's median against it
        value = outcome.median(outcome.candidate)
        shown = f"≥{scenario.target:,.0f} {scenario.unit}"
    else:
        reference = next((r for r in references if _short(r) == scenario.target_reference), references[-1])
        value = outcome.ratio(reference)
        shown = f"≥{scenario.target:g}x {_short(reference)}"
    return shown, "" if value is None else ("yes" if value >= scenario.target else "no")


def _p99(side: list[Measurement]) -> str:
    values = [m.p99_ms for m in side if m.p99_ms is not None]
    return f"{statistics.median(values):.1f}" if values else ""


def _cpu_per_mib(side: list[Measurement]) -> str:
    """ms per MiB for pushes and pulls, µs per request for small requests."""
    values = [m.server_cpu_ms_per_mib for m in side if m.server_cpu_ms_per_mib is not None]
    if values:
        return f"{statistics.median(values):.2f}"
    per_request = [m.server_cpu_ms * 1000 for m in side if m.server_cpu_ms is not None]
    return f"{statistics.median(per_request):.1f}" if per_request else ""


def _idle(side: list[Measurement]) -> str:
    values = [m.idle_share for m in side if m.idle_share is not None]
    return f"{statistics.median(values) * 100:.0f}" if values else ""


def headers(references: list[str], cand: str) -> list[str]:
    names = [*references, cand]
    return [
        "scenario",
        "unit",
        *names,
        *(f"{cand}/{_short(r)}" for r in references),
        "target",
        "met",
        "p99 ms " + " / ".join(_short(n) for n in names),
        "server CPU ms/MiB or µs/request " + " / ".join(_short(n) for n in names),
        "CPUs idle % " + " / ".join(_short(n) for n in names),
        "errors",
    ]


def rows(
    outcomes: list[ScenarioOutcome], rss: dict[str, PeakRss], references: list[str], cand: str
) -> list[list[str]]:
    table: list[list[str]] = []
    for outcome in outcomes:
        errors = outcome.errors()
        target, met = _target_and_met(outcome, references)
        if errors:
            met = "no (errors)"
        sides = [outcome.references.get(r, []) for r in references] + [outcome.candidate]
        p99s = [_p99(side) for side in sides]
        cpus = [_cpu_per_mib(side) for side in sides]
        idles = [_idle(side) for side in sides]
        ratios = [outcome.ratio(r) for r in references]
        table.append(
            [
                outcome.scenario.label,
                outcome.scenario.unit,
                *(_number(outcome.median(side)) for side in sides),
                *(f"{ratio:.2f}x" if ratio is not None else "" for ratio in ratios),
                target,
                met,
                " / ".join(p or "—" for p in p99s) if any(p99s) else "",
                " / ".join(c or "—" for c in cpus) if any(cpus) else "",
                " / ".join(i or "—" for i in idles) if any(idles) else "",
                str(errors),
            ]
        )
    if cand in rss and all(r in rss for r in references):
        peaks = [rss[r] for r in references] + [rss[cand]]
        candidate = rss[cand]
        table.append(
            [
                "peak RSS, whole process tree",
                "MiB",
                *(_number(p.total / MIB) for p in peaks),
                *(f"{candidate.total / rss[r].total:.2f}x" if rss[r].total else "" for r in references),
                "",
                "",
                "",
                "",
                "",
                "",
            ]
        )
        met = "yes" if candidate.per_process <= RSS_TARGET_PER_PROCESS else "no"
        counts = " / ".join(str(p.processes) for p in peaks)
        table.append(
            [
                f"peak RSS, largest process ({counts} processes)",
                "MiB",
                *(_number(p.per_process / MIB) for p in peaks),
                *("" for _ in references),
                f"≤{RSS_TARGET_PER_PROCESS // MIB} MiB",
                met,
                "",
                "",
                "",
                "",
            ]
        )
    return table


def print_table(
    table: list[list[str]], references: list[str], cand: str, caption: str, notes: list[str]
) -> None:
    names = headers(references, cand)
    met_column = names.index("met")
    rich_table = Table(title=f"{cand} vs {', '.join(references)}", caption=caption, caption_justify="left")
    for index, header in enumerate(names):
        rich_table.add_column(header, justify="left" if index == 0 else "right")
    for row in table:
        style = "red" if row[met_column].startswith("no") else ("green" if row[met_column] == "yes" else None)
        rich_table.add_row(*row, style=style)
    console = Console(width=max(160, Console().width))
    console.print(rich_table)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def markdown(table: list[list[str]], references: list[str], cand: str, caption: str, notes: list[str]) -> str:
    names = headers(references, cand)
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join(["---"] + ["--:"] * (len(names) - 1)) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]
    text = "\n".join(lines) + f"\n\n{caption}\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text
