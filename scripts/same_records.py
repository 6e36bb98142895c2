"""Whether two stored runs hold the same records, attributions, models and fits, to the last bit.

    python scripts/same_records.py RESULTS_A RESULTS_B [--run-a ID] [--run-b ID] [--tolerance X]

Each results folder's latest run unless ``--run-a`` / ``--run-b`` name one. What is compared is what the
run's code decides, timings aside (``harness.store.compare``). Prints one line per table that differs
and exits 1; prints the row counts and exits 0 when every table agrees; exits 2 on a folder or run id
that holds no run. Used to check that a change of
the code that should change no number (a refactoring) changes none: run a suite, or a slice of it
(``--limit``), with a fresh cache before and after, and compare.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import BenchError
from harness.store import Store
from harness.store.compare import TABLES, comparable, differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_a", type=Path)
    parser.add_argument("results_b", type=Path)
    parser.add_argument("--run-a")
    parser.add_argument("--run-b")
    parser.add_argument("--tolerance", type=float, default=0.0, help="for records and attributions")
    args = parser.parse_args()
    sides = []
    for folder, run_id in ((args.results_a, args.run_a), (args.results_b, args.run_b)):
        store = Store(folder)
        try:
            sides.append(comparable(store, store.resolve(run_id or "latest")))
        except BenchError as error:  # bad input: one line, exit 2, as bench's own commands
            print(f"error: {error}", file=sys.stderr)
            return 2
    tolerance = {"records": args.tolerance, "attributions": args.tolerance}
    found = differences(sides[0], sides[1], tolerance)
    for line in found:
        print(line)
    if found:
        return 1
    print("same: " + ", ".join(f"{len(sides[0][table])} {table}" for table in TABLES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
