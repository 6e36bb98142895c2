"""Progress through a reporter: what the runner tells it, the terminal bars, and nothing at all."""

from __future__ import annotations

import ast
import io
from pathlib import Path

from rich.console import Console

from harness import runner
from harness.grid import expand
from harness.progress import NullReporter, Reporter, RichReporter
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.suite import load_suite
from tests.conftest import tiny_suite_text
from tests.test_l2e import student_suite


class Recording:
    """A reporter that keeps what it is told, checking the order of the calls."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.total: int | None = None
        self.explanations: list[str] = []
        self.steps: list[tuple] = []
        self.cells = 0
        self.cells_per_explanation: list[int] = []
        self.open = False
        self.closed = False

    def start_run(self, total_cells: int) -> None:
        assert self.total is None
        self.total = total_cells

    def start_explanation(self, description: str) -> None:
        assert not self.open and not self.closed
        self.open = True
        self.explanations.append(description)
        self.cells_per_explanation.append(0)

    def step(self, description=None, done=None, total=None) -> None:
        assert self.open
        self.steps.append((description, done, total))

    def cell_done(self) -> None:
        assert self.open
        self.cells += 1
        self.cells_per_explanation[-1] += 1

    def end_explanation(self) -> None:
        assert self.open
        self.open = False

    def close(self) -> None:
        assert not self.open
        self.closed = True


def run(
    text: str, tmp_path: Path, reporter: Reporter | None = None, console: Console | None = None, **options
):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    loaded = load_suite(path, get_registry())
    options = {"results_dir": tmp_path / "results", "cache_dir": tmp_path / "cache", **options}
    result = Runner(loaded, RunOptions(**options), console=console, reporter=reporter).run()
    return loaded, result


def test_the_reporter_hears_each_explanation_once_and_each_cell_once(tmp_path):
    reporter = Recording()
    loaded, result = run(tiny_suite_text(), tmp_path, reporter)
    assert not result.failed, result.failed
    cells = expand(loaded)
    assert reporter.total == len(cells) == result.cells == 6  # 2 explainers × 3 metrics
    assert reporter.cells == len(cells) and reporter.closed
    model = "tiny · bow(dim=8, max_epochs=20)"
    assert reporter.explanations == [
        f"{model} · random · seed 0",
        f"{model} · saliency(reduction=input_x_gradient) · seed 0",
    ]
    assert len(reporter.explanations) == len({cell.explanation for cell in cells})
    assert reporter.cells_per_explanation == [3, 3]
    # Each explanation: its 6 examples explained in batches of 4, its two removal metrics' perturbations
    # planned together, then one description per metric cell.
    random = reporter.steps[: reporter.steps.index((f"{model} · random · seed 0 · runtime", None, None)) + 1]
    assert random == [
        (f"{model} · random · seed 0", 0, 6),
        (None, 4, None),
        (None, 6, None),
        (f"{model} · random · seed 0 · perturbations of 2 metrics", None, None),
        (f"{model} · random · seed 0 · comprehensiveness(bins=[10,50])", None, None),
        (f"{model} · random · seed 0 · sufficiency(bins=[10,50])", None, None),
        (f"{model} · random · seed 0 · runtime", None, None),
    ]


def test_a_warm_rerun_still_reports_every_cell(tmp_path):
    run(tiny_suite_text(), tmp_path, NullReporter())
    reporter = Recording()
    _, result = run(tiny_suite_text(), tmp_path, reporter, resume=False)
    assert reporter.cells == result.cells == 6 and len(reporter.explanations) == 2


def test_failed_explanations_report_their_cells_done(tmp_path):
    explainers = """
  - name: random
    params: {target: 7}"""  # no such class: the explanation fails, so do its three cells
    reporter = Recording()
    _, result = run(tiny_suite_text(explainers=explainers), tmp_path, reporter)
    assert len(result.failed) == 3
    assert reporter.cells_per_explanation == [3] and reporter.closed


def test_fit_steps_extend_the_explanations_description(tmp_path):
    reporter = Recording()
    _, result = run(student_suite(), tmp_path, reporter)
    assert not result.failed, result.failed
    student = next(e for e in reporter.explanations if "student" in e)
    descriptions = [d for d, _, _ in reporter.steps if d]
    teacher = f"{student} · teacher occlusion on "
    assert any(d.startswith(teacher) for d in descriptions)
    assert any(d.startswith(f"{student} · training student, epoch") for d in descriptions)
    assert (student, 0, 6) in reporter.steps  # back to the explanation's own description to explain
    assert all(d.startswith(tuple(reporter.explanations)) for d in descriptions)


def test_rich_bars_print_descriptions_literally():
    console = Console(record=True, file=io.StringIO(), force_terminal=True, width=120)
    reporter = RichReporter(console)
    reporter.start_run(1)
    reporter.start_explanation("[bold]x[/] · seed 0")
    reporter.step(done=1, total=2)
    console.print(reporter._progress.get_renderable())
    reporter.cell_done()
    reporter.end_explanation()
    reporter.close()
    text = console.export_text()
    assert "[bold]x[/] · seed 0" in text and "1/2" in text


def test_progress_off_prints_nothing(tmp_path):
    console = Console(record=True, file=io.StringIO(), force_terminal=True)
    _, result = run(tiny_suite_text(), tmp_path, console=console, progress=False)
    assert not result.failed and console.export_text() == ""


def test_disabled_rich_reporter_prints_nothing():
    console = Console(record=True, file=io.StringIO(), force_terminal=True)
    reporter = RichReporter(console, enabled=False)
    reporter.start_run(2)
    reporter.start_explanation("[bold]x[/]")
    reporter.step("[bold]x[/] · metric", 1, 2)
    reporter.cell_done()
    reporter.end_explanation()
    reporter.close()
    assert console.export_text() == ""


def test_reporters_implement_the_protocol():
    assert isinstance(NullReporter(), Reporter)
    assert isinstance(RichReporter(Console()), Reporter)
    assert isinstance(Recording(), Reporter)


def test_the_runner_knows_no_rich_progress():
    tree = ast.parse(Path(runner.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assert "rich.progress" not in imported
    assert "Progress" not in Path(runner.__file__).read_text()
