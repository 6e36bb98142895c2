"""The cache shared by processes: whole entries at every read, first writer wins, replace and discard.

The concurrency tests start real processes (``spawn``) on one cache directory. The module is imported as
``harness.cache`` and its names looked up at call time, so that the concurrency tests can be run against
another version of the module.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback
from pathlib import Path

import pytest

import harness.cache as cache_module

KIND, KEY = "models", "ab" + "0" * 62
ITERATIONS = 40


def _slow_folder(token: str):
    def write(folder: Path) -> None:
        (folder / "a.txt").write_text(token)
        time.sleep(0.005)  # a slow writer: the other process renames while this one writes
        (folder / "sub").mkdir()
        (folder / "sub" / "b.txt").write_text(token)

    return write


def _directory_writer(root: str, token: str, barrier, errors: str) -> None:
    try:
        cache = cache_module.Cache(Path(root))
        barrier.wait(60)
        for i in range(ITERATIONS):
            cache.put_directory(KIND, KEY, _slow_folder(f"{token}-{i}"))
    except BaseException:
        (Path(errors) / f"{token}.txt").write_text(traceback.format_exc())
        raise


def _directory_reader(root: str, barrier, stop, out: str) -> None:
    cache = cache_module.Cache(Path(root))
    first, reads, problems = None, 0, []
    barrier.wait(60)
    while not stop.is_set():
        path = cache.get_directory(KIND, KEY)
        if path is None:
            if first is not None:
                problems.append("the entry went missing after the first write")
            continue
        try:
            a = (path / "a.txt").read_text()
            b = (path / "sub" / "b.txt").read_text()
        except OSError as error:
            problems.append(f"a partial entry: {error!r}")
            continue
        reads += 1
        if a != b:
            problems.append(f"an entry mixing two writes: {a} / {b}")
        if first is None:
            first = a
        elif a != first:
            problems.append(f"the entry changed from {first} to {a}")
    Path(out).write_text(json.dumps({"reads": reads, "problems": problems[:10], "n": len(problems)}))


def _json_writer(root: str, token: str, barrier, errors: str) -> None:
    try:
        cache = cache_module.Cache(Path(root))
        barrier.wait(60)
        for i in range(ITERATIONS * 5):
            values = [i] * 2000
            cache.put_json("metric-values", KEY, {"token": f"{token}-{i}", "values": values, "n": len(values)})
    except BaseException:
        (Path(errors) / f"{token}.txt").write_text(traceback.format_exc())
        raise


def _json_reader(root: str, barrier, stop, out: str) -> None:
    cache = cache_module.Cache(Path(root))
    seen, reads, problems = False, 0, []
    barrier.wait(60)
    while not stop.is_set():
        value = cache.get_json("metric-values", KEY)
        if value is None:
            if seen:
                problems.append("the entry went missing or was unreadable after the first write")
            continue
        seen, reads = True, reads + 1
        if len(value["values"]) != value["n"]:
            problems.append("a partial value")
    Path(out).write_text(json.dumps({"reads": reads, "problems": problems[:10], "n": len(problems)}))


def _run_concurrently(tmp_path: Path, writer, reader) -> dict:
    """Two writer processes and one reader on one cache; fail with the writers' tracebacks if any raised."""
    context = multiprocessing.get_context("spawn")
    root, errors, out = tmp_path / "cache", tmp_path / "errors", tmp_path / "reader.json"
    errors.mkdir()
    barrier, stop = context.Barrier(3), context.Event()
    writers = [context.Process(target=writer, args=(str(root), t, barrier, str(errors))) for t in "AB"]
    reading = context.Process(target=reader, args=(str(root), barrier, stop, str(out)))
    for process in (reading, *writers):
        process.start()
    try:
        for process in writers:
            process.join(180)
    finally:
        stop.set()
        reading.join(60)
        for process in (*writers, reading):
            if process.is_alive():
                process.terminate()
                process.join()
    failures = [path.read_text() for path in sorted(errors.iterdir())]
    assert not failures, "a writer failed:\n" + "\n".join(failures)
    assert all(process.exitcode == 0 for process in writers), [p.exitcode for p in writers]
    assert reading.exitcode == 0
    return json.loads(out.read_text())


def test_two_processes_write_one_folder_entry_without_breaking_each_other(tmp_path):
    report = _run_concurrently(tmp_path, _directory_writer, _directory_reader)
    assert report["n"] == 0, report["problems"]
    assert report["reads"] > 0
    cache = cache_module.Cache(tmp_path / "cache")
    path = cache.get_directory(KIND, KEY)
    assert (path / "a.txt").read_text() == (path / "sub" / "b.txt").read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == [KEY]  # no temporary or old folder left


def test_two_processes_write_one_json_entry(tmp_path):
    report = _run_concurrently(tmp_path, _json_writer, _json_reader)
    assert report["n"] == 0, report["problems"]
    assert report["reads"] > 0
    value = cache_module.Cache(tmp_path / "cache").get_json("metric-values", KEY)
    assert value["n"] == len(value["values"]) == 2000
    assert [p.name for p in (tmp_path / "cache" / "metric-values" / KEY[:2]).iterdir()] == [f"{KEY}.json"]


def _folder(text: str):
    return lambda folder: (folder / "a.txt").write_text(text)


def test_the_first_writer_wins_and_its_entry_is_returned(tmp_path):
    cache = cache_module.Cache(tmp_path)
    first = cache.put_directory(KIND, KEY, _folder("one"))
    assert cache.put_directory(KIND, KEY, _folder("two")) == first
    assert (first / "a.txt").read_text() == "one"
    assert [p.name for p in first.parent.iterdir()] == [KEY]


def test_replace_swaps_the_entry(tmp_path):
    cache = cache_module.Cache(tmp_path)
    cache.put_directory(KIND, KEY, _folder("one"))
    path = cache.put_directory(KIND, KEY, _folder("two"), replace=True)
    assert (path / "a.txt").read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == [KEY]


def test_replace_takes_the_place_of_a_file_where_a_folder_belongs(tmp_path):
    cache = cache_module.Cache(tmp_path)
    broken = tmp_path / KIND / KEY[:2] / KEY
    broken.parent.mkdir(parents=True)
    broken.write_text("not a folder")
    path = cache.put_directory(KIND, KEY, _folder("new"), replace=True)
    assert (path / "a.txt").read_text() == "new"


def test_a_failing_writer_leaves_the_existing_entry_and_no_temporary(tmp_path):
    cache = cache_module.Cache(tmp_path)
    path = cache.put_directory(KIND, KEY, _folder("one"))

    def fail(folder: Path) -> None:
        (folder / "a.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.put_directory(KIND, KEY, fail, replace=True)
    assert (path / "a.txt").read_text() == "one"
    assert [p.name for p in path.parent.iterdir()] == [KEY]


def test_no_cache_recomputes_and_replaces_entries(tmp_path):
    cache_module.Cache(tmp_path).put_directory(KIND, KEY, _folder("one"))
    cache_module.Cache(tmp_path).put_json("accuracy", KEY, {"accuracy": 0.5})
    no_cache = cache_module.Cache(tmp_path, read=False)
    assert no_cache.get_directory(KIND, KEY) is None
    assert no_cache.get_json("accuracy", KEY) is None
    path = no_cache.put_directory(KIND, KEY, _folder("two"))
    assert (path / "a.txt").read_text() == "two"
    no_cache.put_json("accuracy", KEY, {"accuracy": 0.75})
    assert cache_module.Cache(tmp_path).get_json("accuracy", KEY) == {"accuracy": 0.75}


def test_no_cache_reads_what_was_written_since_the_runs_start(tmp_path):
    old = time.time() - 60
    cache_module.Cache(tmp_path).put_json("accuracy", KEY, {"accuracy": 0.5})
    cache_module.Cache(tmp_path).put_directory(KIND, KEY, _folder("one"))
    for path in (tmp_path / "accuracy" / KEY[:2] / f"{KEY}.json", tmp_path / KIND / KEY[:2] / KEY):
        os.utime(path, (old, old))  # an earlier run's entries
    started = cache_module.Cache(tmp_path).now()
    run = cache_module.Cache(tmp_path, read=False, since=started)
    assert run.get_json("accuracy", KEY) is None
    assert run.get_directory(KIND, KEY) is None
    run.put_json("accuracy", KEY, {"accuracy": 0.75})
    run.put_directory(KIND, KEY, _folder("two"))
    # Another worker of the same run reads them.
    worker = cache_module.Cache(tmp_path, read=False, since=started)
    assert worker.get_json("accuracy", KEY) == {"accuracy": 0.75}
    assert (worker.get_directory(KIND, KEY) / "a.txt").read_text() == "two"


def test_discard_removes_unreadable_entries(tmp_path):
    cache = cache_module.Cache(tmp_path)
    assert cache.discard("attributions", KEY) is False
    cache.put_json("attributions", KEY, [1, 2])
    path = tmp_path / "attributions" / KEY[:2] / f"{KEY}.json"
    path.write_text("[1, 2")  # truncated
    assert cache.get_json("attributions", KEY) is None
    assert cache.discard("attributions", KEY) is True
    assert not path.exists()
    cache.put_json("attributions", KEY, [1, 2])
    assert cache.get_json("attributions", KEY) == [1, 2]

    entry = cache.put_directory(KIND, KEY, _folder("one"))
    (entry / "a.txt").unlink()  # unreadable: a file is missing
    assert cache.discard(KIND, KEY) is True
    assert cache.get_directory(KIND, KEY) is None
    assert list(entry.parent.iterdir()) == []
    assert (cache.put_directory(KIND, KEY, _folder("two")) / "a.txt").read_text() == "two"


def test_an_unreadable_explainer_fit_is_recomputed_and_logged_not_a_failure(tmp_path, caplog):
    from harness import FitContext

    context = FitContext(cache=cache_module.Cache(tmp_path), key="f" * 64, seed=0, batch_size=8)
    writes = []

    def write(folder):
        writes.append(folder)
        (folder / "weights.txt").write_text("good")

    def read(folder):
        text = (folder / "weights.txt").read_text()
        if text != "good":
            raise ValueError("truncated weights")
        return text

    assert context.cached(write, read) == "good" and len(writes) == 1
    assert context.cached(write, read) == "good" and len(writes) == 1  # read from the cache
    entry = context.cached_directory(write)
    (entry / "weights.txt").write_text("garbage")
    # with its digest to match: an entry this version cannot read (not one altered after it was written)
    (entry / cache_module.DIGEST_FILE).write_text(json.dumps({"sha256": cache_module._tree_digest(entry)}))
    with caplog.at_level("WARNING", logger="bench.cache"):
        assert context.cached(write, read) == "good"
    assert len(writes) == 2 and "unreadable (ValueError: truncated weights); recomputing" in caplog.text
    assert (context.cached_directory(write) / "weights.txt").read_text() == "good"


def test_an_entry_written_just_after_now_reads_as_this_runs(tmp_path):
    # time.time() runs ahead of the coarse clock a kernel stamps files with: a since taken from it made
    # an entry written a moment later look like an earlier run's (seen 4 times in 300 here, and in CI).
    for index in range(300):
        key = f"{index:064d}"
        run = cache_module.Cache(tmp_path, read=False, since=cache_module.Cache(tmp_path).now())
        run.put_json("accuracy", key, {"accuracy": 0.75})
        assert run.get_json("accuracy", key) == {"accuracy": 0.75}
