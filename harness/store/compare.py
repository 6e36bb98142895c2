"""Two stored runs compared on what must not depend on how or where they were computed.

``comparable`` reads everything a run stored that its code decides: each cell's status, error, identity
and examples; every record of every metric but ``runtime``; the attributions; the models' facts and the
fits' reports, less timings (seconds, times, hosts). ``differences`` sets two of them side by side, each
table to its own tolerance (0: to the last bit). The executors' tests check with it that every executor
stores what a serial run stores, and ``scripts/same_records.py`` that a change of the code leaves a
suite's records as they were.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from harness.store.queries import Queries

TABLES = ("cells", "records", "attributions", "models", "fits")


def _sans(row: dict, *keys: str) -> dict:
    return {key: value for key, value in row.items() if key not in keys}


def _untimed(report: dict | None) -> dict | None:
    """A training or fit report less its timings (``seconds``, ``train_seconds``...)."""
    if report is None:
        return None
    return {key: value for key, value in report.items() if not key.endswith("seconds")}


def _blank(value):
    """``value`` with its floats blanked: what identifies (and orders) a row."""
    if isinstance(value, float):
        return None
    if isinstance(value, dict):
        return {key: _blank(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_blank(item) for item in value]
    return value


def comparable(store: Queries, run_id: str, without: Iterable[str] = ()) -> dict[str, list[dict]]:
    """What run ``run_id`` stored that its code decides, by table, rows in an order of their identities
    (floats blanked); none of the explainers ``without``."""
    left_out = set(without)

    def rows(items, *timed: str) -> list[dict]:
        kept = [_sans(item, "run_id", *timed) for item in items if item.get("explainer") not in left_out]
        return sorted(kept, key=lambda item: json.dumps(_blank(item), sort_keys=True, default=str))

    return {
        "cells": rows(store.cells(run_id), "seconds", "finished_at", "timing"),
        "records": rows(r for r in store.records(run_id) if r["metric"] != "runtime"),
        "attributions": rows(store.attributions(run_id), "seconds"),
        "models": rows({**model, "training": _untimed(model["training"])} for model in store.models(run_id)),
        "fits": rows({**fit, "report": _untimed(fit["report"])} for fit in store.fits(run_id)),
    }


def close(actual, expected, tolerance: float) -> bool:
    """Equal, floats within ``tolerance`` (relative or absolute; 0: equal), NaN equal to NaN."""
    if isinstance(actual, float) and isinstance(expected, float):
        return math.isclose(actual, expected, rel_tol=tolerance, abs_tol=tolerance) or actual == expected
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            close(actual[key], expected[key], tolerance) for key in actual
        )
    if isinstance(actual, list | tuple) and isinstance(expected, list | tuple):
        return len(actual) == len(expected) and all(
            close(a, e, tolerance) for a, e in zip(actual, expected, strict=True)
        )
    return actual == expected or (actual != actual and expected != expected)  # NaN is NaN


def differences(
    actual: dict[str, list[dict]], expected: dict[str, list[dict]], tolerances: dict[str, float] | None = None
) -> list[str]:
    """Where two ``comparable`` runs differ, one line per table that does (its first differing row, by
    its identity, and the fields that differ); empty when they agree. ``tolerances``: per table (0 when
    not named)."""
    found = []
    for table in TABLES:
        tolerance = (tolerances or {}).get(table, 0.0)
        mine, theirs = actual[table], expected[table]
        if len(mine) != len(theirs):
            found.append(f"{table}: {len(mine)} rows against {len(theirs)}")
            continue
        for row, wanted in zip(mine, theirs, strict=True):
            if close(row, wanted, tolerance):
                continue
            fields = sorted(
                key for key in {*row, *wanted} if not close(row.get(key), wanted.get(key), tolerance)
            )
            where = {key: row.get(key) for key in ("dataset", "model", "explainer", "metric", "example_id")}
            shown = {key: (row.get(key), wanted.get(key)) for key in fields}
            found.append(f"{table}: {json.dumps(where, default=str)} differs in {shown}"[:2000])
            break
    return found
