"""The ``bench`` command line."""

from __future__ import annotations

import csv
import json
import sys
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import BenchError

app = typer.Typer(
    name="bench",
    help="Benchmark feature-attribution explainers of NLP text classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

RunArgument = Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix), or 'latest'")]
ResultsOption = Annotated[Path, typer.Option("--results", help="results folder holding bench.sqlite")]
ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="apply one of the suite's profiles (e.g. full)")
]


class ReportFormat(StrEnum):
    table = "table"
    md = "md"
    csv = "csv"
    json = "json"


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _registry():
    from harness.registry import get_registry

    return get_registry()


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """List every discovered explainer, model, dataset and metric."""
    registry = _registry()
    infos = [info.as_dict() for info in registry.all()]
    if as_json:
        out.print_json(json.dumps({"plugins": infos, "load_errors": registry.load_errors}))
        return
    table = Table("kind", "name", "package", "version", "description")
    for info in infos:
        table.add_row(info["kind"], info["name"], info["package"], info["version"], info["description"])
    out.print(table)


@app.command()
def validate(
    suite: Annotated[Path, typer.Argument(help="suite YAML file")], profile: ProfileOption = None
) -> None:
    """Check a suite (YAML, keys, plugin names, parameters) without running it."""
    from harness.grid import expand
    from harness.suite import load_suite

    loaded = load_suite(suite, _registry(), profile)
    cells = expand(loaded)
    entries = loaded.entries
    variants = sum(len(m.spec.variants) for m in entries["models"])
    full = (
        len(entries["datasets"]) * variants * len(entries["explainers"]) * len(entries["metrics"])
        * len(loaded.suite.seeds)
    )  # fmt: skip
    skipped = (
        f"; {full - len(cells)} skipped: comparisons of a variant with itself or with a missing teacher"
        if full != len(cells)
        else ""
    )
    out.print(
        f"{suite}: valid — {len(cells)} cells ({len(entries['datasets'])} datasets × "
        f"{variants} model variants × "
        f"{len(entries['explainers'])} explainer configs × {len(entries['metrics'])} metric configs × "
        f"{len(loaded.suite.seeds)} seeds{skipped})",
        highlight=False,
    )


@app.command()
def run(
    suite: Annotated[Path, typer.Argument(help="suite YAML file")],
    out_dir: Annotated[Path, typer.Option("--out", help="results folder")] = Path("results"),
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", envvar="BENCH_CACHE_DIR", help="cache folder [default: ~/.cache/bench]"),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="recompute everything (the cache is refreshed)")
    ] = False,
    device: Annotated[Device | None, typer.Option(help="overrides the suite's device")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="explain at most N examples per dataset")] = None,
    new_run: Annotated[
        bool, typer.Option("--new-run", help="do not resume an interrupted run of this suite")
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Run a suite: train or load models, explain, evaluate, store, and print the report."""
    from harness.report import Report
    from harness.runner import Runner, RunOptions, summary_line
    from harness.store import Store
    from harness.suite import load_suite

    loaded = load_suite(suite, _registry(), profile)
    options = RunOptions(
        results_dir=out_dir,
        cache_dir=cache_dir,
        use_cache=not no_cache,
        device=device.value if device else None,
        limit=limit,
        resume=not new_run,
    )
    result = Runner(loaded, options, console=err).run()
    Report.build(Store(out_dir), result.run_id).print(out)
    err.print(summary_line(result), highlight=False)
    if result.failed:
        raise typer.Exit(1)


@app.command()
def report(
    run_id: RunArgument = "latest",
    results: ResultsOption = Path("results"),
    fmt: Annotated[ReportFormat, typer.Option("--format", help="output format")] = ReportFormat.table,
) -> None:
    """Show a stored run's report again."""
    from harness.report import Report, render
    from harness.store import Store

    store = Store(results)
    built = Report.build(store, store.resolve(run_id))
    if fmt is ReportFormat.table:
        built.print(out)
    else:
        sys.stdout.write(render(built, fmt.value))


@app.command()
def runs(results: ResultsOption = Path("results")) -> None:
    """List the stored runs."""
    from harness.store import Store

    table = Table("run", "suite", "version", "status", "started", "device", "cells done", "failed")
    for row in Store(results).runs():
        table.add_row(
            row["run_id"],
            row["suite"],
            row["suite_version"],
            row["status"],
            row["started_at"],
            row["device"],
            str(row["done"]),
            str(row["failed"]),
        )
    out.print(table)


@app.command()
def export(
    run_id: RunArgument = "latest",
    results: ResultsOption = Path("results"),
    fmt: Annotated[ExportFormat, typer.Option("--format", help="output format")] = ExportFormat.jsonl,
    attributions: Annotated[
        bool, typer.Option("--attributions", help="export the attributions (tokens, offsets, scores, target)")
    ] = False,
    curves: Annotated[
        bool, typer.Option("--curves", help="export the curves behind curve metrics (e.g. degradation)")
    ] = False,
    output: Annotated[Path | None, typer.Option("--out", help="output file [default: stdout]")] = None,
) -> None:
    """Export a run's per-example records (or its attributions, or its curves)."""
    from harness.store import Store

    store = Store(results)
    resolved = store.resolve(run_id)
    if attributions and curves:
        raise BenchError("--attributions and --curves: choose one")
    rows = list(
        store.attributions(resolved)
        if attributions
        else store.curves(resolved)
        if curves
        else store.records(resolved)
    )
    if fmt is ExportFormat.parquet:
        if output is None:
            raise BenchError("--format parquet writes a binary file: give --out FILE.parquet")
        import pandas as pd

        pd.DataFrame(rows).to_parquet(output, index=False)
        err.print(f"wrote {len(rows)} rows to {output}", highlight=False)
        return
    stream = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
    try:
        if fmt is ExportFormat.jsonl:
            for row in rows:
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            if rows:
                writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
                writer.writeheader()
                for row in rows:
                    writer.writerow(
                        {
                            k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
                            for k, v in row.items()
                        }
                    )
    finally:
        if output:
            stream.close()
    if output:
        err.print(f"wrote {len(rows)} rows to {output}", highlight=False)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"warning: {message}", style="yellow", highlight=False, markup=False)


def main() -> None:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        # Outside standalone mode click returns (not raises) the code of typer.Exit.
        code = app(standalone_mode=False)
    except BenchError as error:
        err.print(f"error: {error}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print(
            "interrupted: finished cells are stored; run the same command again to resume", style="yellow"
        )
        sys.exit(130)
    except Exception as error:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
