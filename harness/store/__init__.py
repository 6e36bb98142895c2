"""The result store (``results/bench.sqlite``): its schema and migrations (``schema``), the writer a
run's driver uses (``writer``) and the queries reports, exports and resume read (``queries``)."""

from __future__ import annotations

from harness.store.queries import Queries
from harness.store.schema import RECORD_FIELDS, SCHEMA_VERSION, Database
from harness.store.writer import CellProvenance, RunWriter


class Store(RunWriter, Queries):
    """A results folder's store, to write runs and to read them."""


__all__ = ["RECORD_FIELDS", "SCHEMA_VERSION", "CellProvenance", "Database", "Queries", "RunWriter", "Store"]
