"""The results as a rich table on stdout and, on request, the same table in Markdown."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from bench.procs import PeakRss
from bench.scenarios import Measurement, Scenario

MIB = 1 << 20
RSS_TARGET_PER_PROCESS = 150 * MIB
HEADERS = ["scenario", "unit", "{base}", "{cand}", "ratio", "target", "met", "p99 ms {base}/{cand}", "errors"]


@dataclass
class ScenarioOutcome:
    scenario: Scenario
    baseline: list[Measurement]  # one per round
    candidate: list[Measurement]

    def median(self, side: list[Measurement]) -> float | None:
        return statistics.median(m.value for m in side) if side else None

    def ratio(self) -> float | None:
        """Median of the per-round ratios candidate/baseline (rounds ran back to back, so they pair)."""
        if not self.baseline:  # candidate_only: nothing to divide by
            return None
        ratios = [
            c.value / b.value for b, c in zip(self.baseline, self.candidate, strict=True) if b.value > 0
        ]
        return statistics.median(ratios) if ratios else None

    def errors(self) -> int:
        return sum(m.errors for m in self.baseline + self.candidate)

    def notes(self, base_name: str, cand_name: str) -> list[str]:
        found: list[str] = []
        for name, side in ((base_name, self.baseline), (cand_name, self.candidate)):
            for note in dict.fromkeys(n for m in side for n in m.notes):
                found.append(f"{self.scenario.label} — {name}: {note}")
        return found


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _target_and_met(outcome: ScenarioOutcome) -> tuple[str, str]:
    """The target as shown and whether it was met ("" when the scenario has none)."""
    scenario = outcome.scenario
    if scenario.target is None:
        return "", ""
    if scenario.candidate_only:  # an absolute figure: the candidate's median against it
        value = outcome.median(outcome.candidate)
        shown = f"≥{scenario.target:,.0f} {scenario.unit}"
    else:
        value = outcome.ratio()
        shown = f"≥{scenario.target:g}x"
    return shown, "" if value is None else ("yes" if value >= scenario.target else "no")


def _p99(side: list[Measurement]) -> str:
    values = [m.p99_ms for m in side if m.p99_ms is not None]
    return f"{statistics.median(values):.1f}" if values else ""


def rows(outcomes: list[ScenarioOutcome], rss: dict[str, PeakRss], base: str, cand: str) -> list[list[str]]:
    table: list[list[str]] = []
    for outcome in outcomes:
        ratio, errors = outcome.ratio(), outcome.errors()
        target, met = _target_and_met(outcome)
        if errors:
            met = "no (errors)"
        p99_base, p99_cand = _p99(outcome.baseline), _p99(outcome.candidate)
        table.append(
            [
                outcome.scenario.label,
                outcome.scenario.unit,
                _number(outcome.median(outcome.baseline)),
                _number(outcome.median(outcome.candidate)),
                f"{ratio:.2f}x" if ratio is not None else "",
                target,
                met,
                f"{p99_base or '—'} / {p99_cand}" if p99_base or p99_cand else "",
                str(errors),
            ]
        )
    if base in rss and cand in rss:
        b, c = rss[base], rss[cand]
        table.append(
            [
                "peak RSS, whole process tree",
                "MiB",
                _number(b.total / MIB),
                _number(c.total / MIB),
                f"{c.total / b.total:.2f}x" if b.total else "",
                "",
                "",
                "",
                "",
            ]
        )
        met = "yes" if c.per_process < RSS_TARGET_PER_PROCESS else "no"
        table.append(
            [
                f"peak RSS, largest process ({b.processes} / {c.processes} processes)",
                "MiB",
                _number(b.per_process / MIB),
                _number(c.per_process / MIB),
                "",
                "<150 MiB",
                met,
                "",
                "",
            ]
        )
    return table


def _headers(base: str, cand: str) -> list[str]:
    return [h.format(base=base, cand=cand) for h in HEADERS]


def print_table(table: list[list[str]], base: str, cand: str, caption: str, notes: list[str]) -> None:
    rich_table = Table(title=f"{cand} vs {base}", caption=caption, caption_justify="left")
    for index, header in enumerate(_headers(base, cand)):
        rich_table.add_column(header, justify="left" if index == 0 else "right")
    for row in table:
        style = "red" if row[6].startswith("no") else ("green" if row[6] == "yes" else None)
        rich_table.add_row(*row, style=style)
    console = Console(width=max(140, Console().width))
    console.print(rich_table)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def markdown(table: list[list[str]], base: str, cand: str, caption: str, notes: list[str]) -> str:
    headers = _headers(base, cand)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["--:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]
    text = "\n".join(lines) + f"\n\n{caption}\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text
