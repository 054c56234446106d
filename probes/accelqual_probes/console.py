"""What a person or a pod log sees while a probe runs: progress and the result table.

`RichConsole` draws a progress bar and a result table on a terminal; `LineConsole`
writes one plain line per check (pod mode: logs must stay greppable and never hold
terminal control codes). Both only observe; the report is built elsewhere.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from accelqual_probes.schema import CheckResult, Inventory, ProbeReport, Verdict

_STYLES = {Verdict.PASS: "green", Verdict.WARN: "yellow", Verdict.FAIL: "bold red", Verdict.ERROR: "bold magenta",
           Verdict.SKIP: "dim"}
_OVERALL_STYLES = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold magenta"}


def headline(result: CheckResult) -> str:
    """The check's primary figure in one short phrase (first measurement with its unit)."""
    if not result.measurements:
        return ""
    first = next(result.measurements[0].readings())
    where = f" (device {first.device})" if first.device is not None else ""
    return f"{first.metric}={first.value:.4g}{(' ' + first.unit) if first.unit else ''}{where}"


class LineConsole:
    """One line per event on `stream` (stderr in pod mode)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.total = 0
        self.done = 0

    def _say(self, text: str) -> None:
        self.stream.write(f"accelqual: {text}\n")
        self.stream.flush()

    def run_started(self, profile: str, inventory: Inventory, check_ids: list[str]) -> None:
        self.total = len(check_ids)
        self._say(f"{inventory.count} x {inventory.model or inventory.device_type} ({inventory.device_type}), "
                  f"profile {profile}, {self.total} checks")

    def check_started(self, check_id: str) -> None:
        self._say(f"[{self.done + 1}/{self.total}] {check_id} ...")

    def check_finished(self, result: CheckResult) -> None:
        self.done += 1
        self._say(f"[{self.done}/{self.total}] {result.id} {result.verdict.value} in {result.duration_seconds:.2f}s: "
                  f"{result.reason[:300]}")

    def finished(self, report: ProbeReport) -> None:
        self._say(f"verdict {report.verdict.value} in {report.duration_seconds:.1f}s: {report.reason[:300]}")


class RichConsole:
    """A progress bar while checks run, then a table of results."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream, highlight=False)
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True)
        self.task = self.progress.add_task("starting", total=None)

    def run_started(self, profile: str, inventory: Inventory, check_ids: list[str]) -> None:
        self.console.print(f"[bold]accelqual probe[/]: {inventory.count} x {inventory.model or inventory.device_type} "
                           f"({inventory.device_type}), profile [cyan]{profile}[/], {len(check_ids)} checks")
        self.progress.update(self.task, total=len(check_ids))
        self.progress.start()

    def check_started(self, check_id: str) -> None:
        self.progress.update(self.task, description=check_id)

    def check_finished(self, result: CheckResult) -> None:
        self.progress.advance(self.task)

    def finished(self, report: ProbeReport) -> None:
        self.progress.stop()
        table = Table(title=f"{report.profile} / {report.suite}", show_lines=False)
        id_width = max((len(r.id) for r in report.checks), default=10)
        # One line per check, cells cut to the terminal width (the JSON report has it all);
        # the value column only where there is room for it.
        value_width = 28 if self.console.width >= 110 else 0
        reason_width = max(12, self.console.width - id_width - 7 - 6 - value_width - (16 if value_width else 13))
        table.add_column("check", no_wrap=True, min_width=id_width)
        table.add_column("verdict", no_wrap=True, min_width=7)
        table.add_column("time", no_wrap=True, justify="right", min_width=6)
        if value_width:
            table.add_column("value", overflow="ellipsis", no_wrap=True, max_width=value_width)
        table.add_column("reason", overflow="ellipsis", no_wrap=True, max_width=reason_width)
        for result in report.checks:
            style = _STYLES.get(result.verdict, "")
            # The first finding is the deciding one.
            cells = [result.id, f"[{style}]{result.verdict.value}[/]", f"{result.duration_seconds:.2f}s"]
            if value_width:
                cells.append(headline(result))
            table.add_row(*cells, result.reason.split("; ")[0][:160])
        self.console.print(table)
        style = _OVERALL_STYLES.get(report.verdict.value, "bold")
        faults = f" (injected: {', '.join(report.injected_faults)})" if report.injected_faults else ""
        self.console.print(f"verdict [{style}]{report.verdict.value}[/] in {report.duration_seconds:.1f}s: "
                           f"{report.reason}{faults}")
