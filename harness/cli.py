"""The ``bench`` command line."""

from __future__ import annotations

import csv
import errno
import json
import shlex
import sqlite3
import sys
import warnings
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from harness.errors import BenchError
from harness.inert import csv_cell, json_text, printable

try:  # typer >= 0.2x ships its own copy of click; earlier versions use click itself
    from typer._click.exceptions import (
        BadParameter,
        ClickException,
        MissingParameter,
        NoSuchOption,
        UsageError,
    )
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import BadParameter, ClickException, MissingParameter, NoSuchOption, UsageError


class _Commands(TyperGroup):
    """bench's commands: Ctrl-C in any of them is one line on stderr and exit code 130 (typer would exit
    130 saying nothing; ``run`` says more itself)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _interrupted() from None


app = typer.Typer(
    name="bench",
    cls=_Commands,
    help="Benchmark feature-attribution explainers of NLP text classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

RunArgument = Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix), or 'latest'")]
SuiteArgument = Annotated[Path, typer.Argument(metavar="SUITE", help="suite YAML file")]
ResultsOption = Annotated[Path, typer.Option("--results", help="results folder holding bench.sqlite")]
ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="apply one of the suite's profiles (e.g. full)")
]


class ReportFormat(StrEnum):
    table = "table"
    md = "md"
    csv = "csv"
    json = "json"
    html = "html"


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ExecutorName(StrEnum):
    serial = "serial"
    process = "process"
    ray = "ray"


# The results database the command is using, so that a database error can name the file.
_database: dict[str, Path | str] = {}


def _store(folder: Path, option: str = "--results"):
    from harness.store import Store

    store = Store(folder)
    _database.update(path=store.path, option=option)
    return store


def _text(value: object, style: str = "") -> Text:
    """A user-derived value as rich prints it literally: no markup (``[init:2]``), no emoji codes, its
    control characters escaped (an escape sequence shows as ``\\x1b[31m``)."""
    return Text("" if value is None else printable(value), style=style)


def _say(console: Console, line: str, style: str = "") -> None:
    """One literal line: markup and emoji codes in ``line`` are printed as they are, its line breaks as
    spaces and its other control characters escaped."""
    console.print(_text(" ".join(line.splitlines()), style), highlight=False, soft_wrap=True)


def _registry():
    from harness.registry import get_registry

    return get_registry()


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """List every discovered explainer, model, dataset and metric."""
    registry = _registry()
    infos = [info.as_dict() for info in registry.all()]
    if as_json:
        sys.stdout.write(json_text({"plugins": infos, "load_errors": registry.load_errors}, indent=2) + "\n")
        return
    table = Table("kind", "name", "package", "version", "api", "description")
    for info in infos:
        info["api"] = info["api_version"] or "—"
        table.add_row(
            *(_text(info[key]) for key in ("kind", "name", "package", "version", "api", "description"))
        )
    out.print(table)


@app.command()
def validate(
    suite: SuiteArgument,
    profile: ProfileOption = None,
    plan: Annotated[
        bool, typer.Option("--plan", help="also print the run's task graph: its tasks per stage")
    ] = False,
    plan_json: Annotated[
        Path | None,
        typer.Option(
            "--plan-json", metavar="FILE", help="write the whole task graph as JSON (implies --plan)"
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="plan as bench run --limit N: explain at most N examples")
    ] = None,
    no_data: Annotated[
        bool, typer.Option("--no-data", help="check the suite alone, without loading its datasets")
    ] = False,
) -> None:
    """Check a suite (YAML, keys, plugin names, parameters, requirements) without running it, and load
    and check its datasets as bench run does before computing anything (files, rows, labels, ids,
    classes, text)."""
    import torch

    from harness.datachecks import check_suite_data
    from harness.grid import cells_to_run, left_out, unavailable
    from harness.suite import load_suite

    loaded = load_suite(suite, _registry(), profile)
    cells = cells_to_run(loaded)
    if not no_data:
        check_suite_data(loaded)
    unmet = left_out(loaded)
    here = [reason for cell in cells if (reason := unavailable(cell, torch.cuda.is_available()))]
    entries = loaded.entries
    variants = sum(len(m.spec.variants) for m in entries["models"])
    full = (
        len(entries["datasets"]) * variants * len(entries["explainers"]) * len(entries["metrics"])
        * len(loaded.suite.seeds)
    )  # fmt: skip
    skipped = full - len(cells) - len(unmet)
    notes = []
    if skipped:
        notes.append(
            f"{skipped} not in the grid: comparisons of a variant or a device with itself (init:1 is "
            "default) or with a missing teacher"
        )
    if unmet:
        notes.append(f"{len(unmet)} left out: requirements not provided, listed below")
    if here:
        notes.append(f"{len(here)} to be skipped on this machine, listed below")
    _say(
        out,
        f"{suite}: valid — {len(cells)} cells ({len(entries['datasets'])} datasets × "
        f"{variants} model variants × "
        f"{len(entries['explainers'])} explainer configs × {len(entries['metrics'])} metric configs × "
        f"{len(loaded.suite.seeds)} seeds{''.join(f'; {note}' for note in notes)})",
    )
    for reason, count in Counter(reason for _, reason in unmet).items():  # in grid order
        _say(out, f"  {count} left out: {reason}")
    for reason, count in Counter(here).items():
        _say(out, f"  {count} to be skipped: {reason}")
    if plan or plan_json is not None:
        from harness.plan import build_plan

        graph = build_plan(loaded, cells, limit)
        _say(out, f"plan: {graph.counts_line()}")
        if plan_json is not None:
            plan_json.write_text(graph.as_json() + "\n", encoding="utf-8")
            _say(err, f"wrote the plan's {len(graph)} tasks to {plan_json}")
    for where in loaded.remote_code:
        _say(
            err,
            f"warning: {where} sets trust_remote_code: it runs code downloaded with the model; "
            "bench run needs --allow-remote-code",
        )


@app.command()
def run(
    suite: SuiteArgument,
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
    allow_remote_code: Annotated[
        bool,
        typer.Option(
            "--allow-remote-code",
            help="let entries with trust_remote_code run code downloaded with their model (read it first)",
        ),
    ] = False,
    profile: ProfileOption = None,
    executor: Annotated[
        ExecutorName,
        typer.Option(
            help="where the stages run: this process, a local pool of processes, or Ray "
            "(pip install 'xai-bench-harness[ray]')"
        ),
    ] = ExecutorName.serial,
    workers: Annotated[
        int | None, typer.Option(min=1, help="process, ray: how many workers [default: one per CPU]")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="ray: the cluster to join (e.g. auto, or HOST:6379) [default: start a local one]"),
    ] = None,
    task_timeout: Annotated[
        float | None,
        typer.Option("--task-timeout", min=1, help="process: seconds a task may run before it fails"),
    ] = None,
    retry_crashed: Annotated[
        bool,
        typer.Option(
            "--retry-crashed",
            help="resuming: run again the tasks that crashed the run's process (their cells fail otherwise)",
        ),
    ] = False,
) -> None:
    """Run a suite: train or load models, explain, evaluate, store, and print the report."""
    try:
        from harness.executors import make_executor
        from harness.grid import cells_to_run
        from harness.report import Report
        from harness.runner import Runner, RunOptions, summary_line
        from harness.suite import load_suite

        runs_on = make_executor(executor.value, workers=workers, address=address, task_timeout=task_timeout)
        store = _store(out_dir, "--out")
        loaded = load_suite(suite, _registry(), profile)
        cells_to_run(loaded)  # a suite of no cells is refused before a run is recorded
        options = RunOptions(
            results_dir=out_dir,
            cache_dir=cache_dir,
            use_cache=not no_cache,
            device=device.value if device else None,
            limit=limit,
            resume=not new_run,
            allow_remote_code=allow_remote_code,
            executor=executor.value,
            workers=workers,
            address=address,
            task_timeout=task_timeout,
            retry_crashed=retry_crashed,
        )
        result = Runner(loaded, options, console=err, executor=runs_on).run()
        Report.build(store, result.run_id).print(out)
        _say(err, summary_line(result))
        if result.failed:
            raise typer.Exit(1)
    except KeyboardInterrupt:  # the runner has marked the run interrupted
        raise _interrupted("re-run to resume") from None


@app.command()
def report(
    run_id: RunArgument = "latest",
    results: ResultsOption = Path("results"),
    fmt: Annotated[
        ReportFormat,
        typer.Option("--format", help="output format (html: one self-contained page, heat-maps and plots)"),
    ] = ReportFormat.table,
    examples: Annotated[
        str,
        typer.Option(
            "--examples", metavar="N|ID,ID", help="html: heat-maps of the first N examples, or of these ids"
        ),
    ] = "3",
    output: Annotated[Path | None, typer.Option("--out", help="output file [default: stdout]")] = None,
    sections: Annotated[
        list[str] | None,
        typer.Option(
            "--section",
            metavar="KIND",
            help="table, md: only these sections (repeatable), e.g. reproductions for the paper's claims",
        ),
    ] = None,
) -> None:
    """Show a stored run's report again, or write it as Markdown, CSV, JSON or an HTML page."""
    from harness.report import Report, render
    from harness.report.document import SECTION_KINDS
    from harness.report.markdown import markdown
    from harness.report.terminal import print_document

    if sections:
        unknown = [kind for kind in sections if kind not in SECTION_KINDS]
        if unknown:
            raise BenchError(f"--section: no section kind '{unknown[0]}' (kinds: {', '.join(SECTION_KINDS)})")
        if fmt not in (ReportFormat.table, ReportFormat.md):
            raise BenchError("--section: choose --format table or md (csv, json and html hold every section)")
    store = _store(results)
    built = Report.build(store, store.resolve(run_id))
    if sections:
        document = built.document().only(set(sections))
        if fmt is ReportFormat.table and output is None:
            print_document(document, out)
            return
        fmt, text = ReportFormat.md, markdown(document)
        if output is None:
            sys.stdout.write(text)
            return
        output.write_text(text, encoding="utf-8")
        _say(err, f"wrote the report of run {built.run['run_id']} to {output}")
        return
    if fmt is ReportFormat.table and output is None:
        built.print(out)
        return
    if fmt is ReportFormat.html:
        from harness.report.html import html_report

        text = html_report(built, store, _examples(examples))
    elif fmt is ReportFormat.table:
        raise BenchError("--out writes a file: choose its --format (md, csv, json or html)")
    else:
        text = render(built, fmt.value)
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    _say(err, f"wrote the report of run {built.run['run_id']} to {output}")


def _examples(value: str) -> int | list[str]:
    """--examples: a count, or example ids separated by commas."""
    if value.strip().isdigit():
        if int(value) < 1:
            raise BenchError("--examples: give a count of at least 1, or example ids separated by commas")
        return int(value)
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise BenchError("--examples: give a count, or example ids separated by commas")
    return ids


class BoardFormat(StrEnum):
    html = "html"
    md = "md"
    json = "json"


@app.command()
def leaderboard(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[RUN]...", help="run ids (or unique prefixes, or 'latest') [default: every run]"
        ),
    ] = None,
    results: Annotated[
        list[Path] | None,
        typer.Option("--results", help="a results folder holding bench.sqlite; repeat to merge folders"),
    ] = None,
    suite: Annotated[
        list[str] | None, typer.Option("--suite", help="only runs of this suite (by name); repeatable")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="write the site here: index.html, leaderboard.md, leaderboard.json"),
    ] = None,
    fmt: Annotated[
        BoardFormat | None,
        typer.Option("--format", help="write only this format [default: all with --out, md on stdout]"),
    ] = None,
    all_runs: Annotated[
        bool, typer.Option("--all-runs", help="keep every run's measurement of a cell, not only the latest")
    ] = False,
) -> None:
    """Build leaderboards from stored runs: one board per metric family, ranks with uncertainty."""
    from harness.report.leaderboard import Leaderboard
    from harness.report.site import render_leaderboard, write_site

    folders = results or [Path("results")]
    _database.update(path=folders[0] / "bench.sqlite", option="--results")
    board = Leaderboard.build(folders, runs or (), suite or (), all_runs)
    if out_dir is None:
        sys.stdout.write(render_leaderboard(board, (fmt or BoardFormat.md).value))
        return
    written = write_site(board, out_dir, [fmt.value] if fmt else [f.value for f in BoardFormat])
    _say(
        err,
        f"wrote {', '.join(str(path) for path in written)}: {len(board.boards)} board(s) from "
        f"{len(board.sources)} run(s)",
    )


@app.command()
def runs(results: ResultsOption = Path("results")) -> None:
    """List the stored runs."""
    table = Table("run", "suite", "version", "status", "started", "device", "cells done", "failed")
    keys = ("run_id", "suite", "suite_version", "status", "started_at", "device", "done", "failed")
    for row in _store(results).runs():
        table.add_row(*(_text(row[key]) for key in keys))
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
        bool,
        typer.Option("--curves", help="export the curves behind curve metrics (e.g. unchanged-predictions)"),
    ] = False,
    output: Annotated[Path | None, typer.Option("--out", help="output file [default: stdout]")] = None,
) -> None:
    """Export a run's per-example records (or its attributions, or its curves)."""
    store = _store(results)
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
        _say(err, f"wrote {len(rows)} rows to {output}")
        return
    stream = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
    try:
        if fmt is ExportFormat.jsonl:
            for row in rows:
                stream.write(json_text(row) + "\n")
        else:
            if rows:
                writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
                writer.writeheader()
                for row in rows:  # text a spreadsheet would run as a formula is neutralised
                    writer.writerow(
                        {
                            k: csv_cell(
                                json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
                            )
                            for k, v in row.items()
                        }
                    )
    finally:
        if output:
            stream.close()
    if output:
        _say(err, f"wrote {len(rows)} rows to {output}")


def _interrupted(what_next: str = "") -> typer.Exit:
    """Ctrl-C: one line on stderr (with what to do next, where there is something to do), no traceback;
    raise the exit (code 130) returned."""
    _say(err, f"interrupted; {what_next}" if what_next else "interrupted", "yellow")
    return typer.Exit(130)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _say(err, f"warning: {message}", "yellow")


def _fail(message: str) -> None:
    """A mistake on the command line or in a file it names: one line on stderr, exit code 2."""
    _say(err, f"error: {message}", "red")
    sys.exit(2)


def _sentence(message: str) -> str:
    """A click/typer/pydantic message as the middle of a line: no capital, no final full stop."""
    message = " ".join(message.split()).removeprefix("Value error, ").rstrip(".")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    return message


def _usage_message(error: ClickException, args: list[str]) -> str:
    """One line for a usage error: what is wrong, then where the help is."""
    ctx = getattr(error, "ctx", None)
    param = getattr(error, "param", None)
    if isinstance(error, MissingParameter):
        if param is not None and param.param_type_name == "argument":
            message = f"missing argument {param.metavar or (param.name or '').upper()}"
        else:
            message = _sentence(error.format_message())
    elif isinstance(error, BadParameter) and param is not None:
        if param.param_type_name == "option" and param.opts:
            label = "/".join(param.opts)
        else:
            label = param.metavar or (param.name or "").upper()
        message = _sentence(error.message)
        # typer validates with pydantic, whose error carries the rejected value
        errors = getattr(error.__cause__, "errors", None)
        value = errors()[0].get("input") if callable(errors) and errors() else None
        if value is not None and f"'{value}'" not in message:
            label = f"{label} {shlex.quote(str(value))}"
        message = f"{label}: {message}"
    elif isinstance(error, NoSuchOption) and error.possibilities:
        message = (
            f"no such option: {error.option_name}; did you mean {' or '.join(sorted(error.possibilities))}?"
        )
    else:
        message = _sentence(error.format_message())
    if ctx is not None:
        command = ctx.command_path
    else:  # some parser errors carry no context: name the command from the arguments
        command = " ".join(["bench", *[a for a in args[:1] if a in _command_names()]])
    help_hint = f"'{command} --help'"
    return f"{message} (see {help_hint})" if message.endswith("?") else f"{message}; try {help_hint}"


def _command_names() -> set[str]:
    return {info.name or info.callback.__name__ for info in app.registered_commands if info.callback}


def _database_message(error: sqlite3.DatabaseError) -> str:
    from harness.store.schema import database_problem

    path = _database.get("path")
    option = _database.get("option", "--results")
    problem = database_problem(path, error)  # read-only, disk full, cannot open, locked: not the file's fault
    if problem is not None:
        return problem
    name = f"{path} cannot be read as" if path else "cannot read the results folder's bench.sqlite as"
    return (
        f"{name} a bench results database ({error}); give {option} a folder written by 'bench run', "
        "or move that file away"
    )


def _storage_problem(error: OSError) -> str | None:
    """One line for a folder that cannot be written, named for why: a read-only file system, a full disk
    (or quota), no permission. None for another error."""
    where = f"{error.filename}: " if error.filename is not None else ""
    if error.errno == errno.EROFS:
        return f"{where}read-only file system; choose a writable folder (--out, --cache-dir)"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"{where}the disk is full (or the quota used up); free space there, or choose a folder on "
            "another disk (--out, --cache-dir)"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{where}permission denied; check that you may write there, or choose another folder (--out, --cache-dir)"
    return None


def main(args: list[str] | None = None) -> None:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    args = sys.argv[1:] if args is None else list(args)
    warnings.showwarning = _show_warning
    try:
        # Outside standalone mode click returns (not raises) the code of typer.Exit, and raises its
        # usage errors, which are printed here as one line rather than as a usage box.
        code = app(args, prog_name="bench", standalone_mode=False)
    except BenchError as error:
        _fail(str(error))
    except sqlite3.DatabaseError as error:
        _fail(_database_message(error))
    except (typer.Abort, KeyboardInterrupt):  # outside a command (``_Commands``): reading the arguments
        sys.exit(_interrupted().exit_code)
    except ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # plain `bench`: the help is already printed
            _fail(f"missing command; choose one of {', '.join(sorted(_command_names()))}")
        if isinstance(error, UsageError):
            _fail(_usage_message(error, args))
        _say(err, f"error: {_sentence(error.format_message())}", "red")
        sys.exit(error.exit_code)
    except OSError as error:
        problem = _storage_problem(error)
        if problem is not None:
            _fail(problem)
        if error.filename is None:
            raise
        _fail(
            f"{error.filename}: {_sentence(error.strerror or str(error))}; check that path (--out, --results, --cache-dir)"
        )
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
