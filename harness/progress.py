"""Progress of a run, told to a reporter: the runner says what it is doing, the reporter shows it.

The runner works through a run one explanation (dataset, model, variant, explainer, seed) at a time,
then scores that explanation's cells. A reporter hears of the run's cells, of the explanation in
progress (its description, and how far its current step is) and of each cell as it is done. It never
answers: the runner keeps its own descriptions, so a reporter that shows nothing (``NullReporter``, for
processes without a terminal, such as workers) serves as well as one that draws bars (``RichReporter``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness.inert import printable


@runtime_checkable
class Reporter(Protocol):
    """What a run tells about its progress, in this order: ``start_run``, then for each explanation
    ``start_explanation``, any number of ``step`` and ``cell_done``, ``end_explanation``; ``close`` last
    (also after an error)."""

    def start_run(self, total_cells: int) -> None:
        """The run starts with ``total_cells`` cells to compute."""

    def start_explanation(self, description: str) -> None:
        """An explanation starts; its step has no known size yet."""

    def step(self, description: str | None = None, done: int | None = None, total: int | None = None) -> None:
        """The explanation in progress: a new description, and how far its current step is (``done``
        of ``total``); what is None stays as it was."""

    def cell_done(self) -> None:
        """One more cell is done (recorded or failed)."""

    def end_explanation(self) -> None:
        """The explanation in progress is over."""

    def close(self) -> None:
        """The run is over."""


class NullReporter:
    """Shows nothing."""

    def start_run(self, total_cells: int) -> None:
        pass

    def start_explanation(self, description: str) -> None:
        pass

    def step(self, description: str | None = None, done: int | None = None, total: int | None = None) -> None:
        pass

    def cell_done(self) -> None:
        pass

    def end_explanation(self) -> None:
        pass

    def close(self) -> None:
        pass


class RichReporter:
    """Bars in the terminal, gone when the run ends: the run's cells, and one bar per explanation while it
    runs. Descriptions hold user labels, so they are printed as they are, never read as markup, their
    control characters escaped (``harness.inert.printable``)."""

    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._task: TaskID | None = None

    def start_run(self, total_cells: int) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.enabled,
            transient=True,
        )
        self._progress.start()
        self._overall = self._progress.add_task("cells", total=total_cells)

    def start_explanation(self, description: str) -> None:
        self._task = self._progress.add_task(printable(description), total=None)

    def step(self, description: str | None = None, done: int | None = None, total: int | None = None) -> None:
        if self._task is not None:
            shown = None if description is None else printable(description)
            self._progress.update(self._task, description=shown, completed=done, total=total)

    def cell_done(self) -> None:
        self._progress.advance(self._overall)

    def end_explanation(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
