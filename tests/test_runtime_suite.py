"""Timing explainers on CPU and on CUDA (suites/runtime.yaml): a model entry names its device, the
same model on two devices is two entries, ``device-speed-up`` compares a cell with its twin on the
reference device, and a cell on a device this machine lacks is skipped with its reason. No test needs a
GPU: availability is a parameter (``unavailable(cell, cuda_available)``)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from conftest import metric_input, tiny_suite_text
from test_metrics import timed
from test_suite import error_of, load

from harness.entries import PluginEntry, device_twins
from harness.grid import Cell, expand, unavailable
from harness.plugin import Dataset, Explainer, Metric, Model, Params, metadata_problem
from harness.registry import PluginInfo
from harness.report import Report, render
from harness.store import Store
from harness.suite import DatasetSpec, ModelSpec, Spec, Suite
from plugins.metrics.runtime import DeviceSpeedUp

REPO = Path(__file__).resolve().parents[1]
BOW = "  - name: bow\n    params: {dim: 8, max_epochs: 20}"
METRICS = """
  - name: runtime
  - name: device-speed-up"""


def twin_suite(*devices: str | None, metrics: str = METRICS) -> str:
    """The tiny suite with the bag-of-words model listed once per device (None: no device key)."""
    models = "\n".join(BOW + ("" if device is None else f"\n    device: {device}") for device in devices)
    return tiny_suite_text(metrics=metrics).replace(BOW, models)


# -- a model entry names its device ---------------------------------------------------------------------


def test_a_model_entry_names_its_device_and_its_default_label_says_which(write_suite):
    loaded = load(write_suite(twin_suite("cpu", "cuda", None)))
    assert [model.device for model in loaded.entries["models"]] == ["cpu", "cuda", None]
    assert [model.label for model in loaded.entries["models"]] == [
        "bow(dim=8, max_epochs=20) on cpu",
        "bow(dim=8, max_epochs=20) on cuda",
        "bow(dim=8, max_epochs=20)",
    ]


def test_an_unknown_device_is_a_one_line_error_with_its_line(write_suite):
    text = twin_suite("gpu")
    path = write_suite(text)
    line = text.splitlines().index("    device: gpu") + 1
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: models[0].device: ") and "'gpu'" in message


def test_the_same_model_on_two_devices_is_two_entries_with_two_labels(write_suite):
    cpu, cuda = load(write_suite(twin_suite("cpu", "cuda"))).entries["models"]
    assert cpu != cuda and cpu.id != cuda.id and cpu.label != cuda.label


def test_two_entries_naming_one_device_with_one_label_are_still_rejected(write_suite):
    text = twin_suite("cuda", "cuda")
    assert "is the same entry as models[0]" in error_of(write_suite(text))


# -- identities: unchanged for entries naming no device ------------------------------------------------


class WidthParams(Params):
    width: int = 4


class FixedModel(Model):
    name: ClassVar[str] = "fixed"
    Params = WidthParams

    def build(self, dataset, *, seed, device, variant="default"): ...


class FixedDataset(Dataset):
    name: ClassVar[str] = "fixed-data"

    def load(self): ...


class FixedExplainer(Explainer):
    name: ClassVar[str] = "fixed-explainer"

    def explain(self, classifier, encoding, targets): ...


class FixedMetric(Metric):
    name: ClassVar[str] = "fixed-metric"
    family: ClassVar[str] = "cost"
    direction: ClassVar[str] = "lower"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def compute(self, data): ...


def entry(cls, spec: Spec, user_params: dict | None = None) -> PluginEntry:
    """An entry of a plugin defined here, so that its identity depends on nothing another change could
    touch (a shipped plugin's parameters or version)."""
    user_params = user_params or {}
    info = PluginInfo(cls.kind, cls.name, cls, "tests", "0")
    return PluginEntry.create(info, spec, cls.Params.model_validate(user_params), user_params)


def fixed_cell(model: PluginEntry) -> Cell:
    dataset = entry(FixedDataset, DatasetSpec(name="fixed-data", sample=3))
    explainer, metric = (
        entry(FixedExplainer, Spec(name="fixed-explainer")),
        entry(FixedMetric, Spec(name="m")),
    )
    return Cell(dataset, model, "default", explainer, metric, 0)


def test_an_entry_naming_no_device_keeps_the_identity_it_had_before_devices():
    # hashes computed before models could name a device: caches, cell ids and stored runs stay valid
    model = entry(FixedModel, ModelSpec(name="fixed", params={"width": 8}), {"width": 8})
    assert model.identity_json == '{"name":"fixed","params":{"width":8},"version":"1"}'
    assert model.id == "62bb7d271cddf8cd"
    assert fixed_cell(model).id == "13909ef01653cfc0"


def test_a_named_device_is_part_of_the_identity():
    plain = entry(FixedModel, ModelSpec(name="fixed", params={"width": 8}), {"width": 8})
    on_cuda = entry(FixedModel, ModelSpec(name="fixed", params={"width": 8}, device="cuda"), {"width": 8})
    assert on_cuda.identity == {**plain.identity, "device": "cuda"}
    assert on_cuda != plain and fixed_cell(on_cuda).id != fixed_cell(plain).id


def test_the_hash_of_a_suite_naming_no_device_is_unchanged():
    data = {
        "name": "t", "version": 1, "datasets": [{"name": "d"}], "models": [{"name": "m", "params": {"x": 1}}],
        "explainers": [{"name": "e"}], "metrics": [{"name": "runtime"}],
    }  # fmt: skip
    assert Suite.model_validate(data).canonical_hash() == (
        "26790ea0640ae54e77bd477ed48ef77b831caf83a63b6f0ea5f252e6fa3f7d31"
    )
    data["models"][0]["device"] = "cuda"
    assert Suite.model_validate(data).canonical_hash() != (
        "26790ea0640ae54e77bd477ed48ef77b831caf83a63b6f0ea5f252e6fa3f7d31"
    )


# -- device-speed-up compares a cell with its twin on the reference device -------------------------------


def cells_of(loaded, metric: str) -> list[Cell]:
    return [cell for cell in expand(loaded) if cell.metric.name == metric]


def test_device_speed_up_compares_each_cuda_cell_with_the_same_cell_on_cpu(write_suite):
    loaded = load(write_suite(twin_suite("cpu", "cuda")))
    cpu, cuda = loaded.entries["models"]
    compared = cells_of(loaded, "device-speed-up")
    assert [cell.model for cell in compared] == [cuda, cuda]  # no cell on the reference device itself
    for cell in compared:
        assert cell.reference.model is cpu and cell.reference.model.label == cpu.label
        assert cell.reference == Cell(cell.dataset, cpu, cell.variant, cell.explainer, cell.metric, cell.seed)
    assert len(cells_of(loaded, "runtime")) == 4  # runtime is measured on both


def test_a_cell_on_the_reference_device_or_on_a_model_naming_none_compares_nothing(write_suite):
    loaded = load(write_suite(twin_suite("cpu", "cuda", None)))
    models = loaded.entries["models"]
    twins = device_twins(models)
    [dataset], explainer = loaded.entries["datasets"], loaded.entries["explainers"][0]
    metric = loaded.entries["metrics"][1]

    def cell(model: PluginEntry, devices=None) -> Cell:
        return Cell(
            dataset, model, "default", explainer, metric, 0, twins[model] if devices is None else devices
        )

    cpu, cuda, plain = models
    assert twins[cpu] == twins[cuda] == twins[plain] == (cpu, cuda, plain)
    assert cell(cpu).reference == cell(cpu) and not cell(cpu).compares_something
    assert not cell(plain).compares_something  # runs wherever the suite or --device says
    assert cell(cuda).compares_something and cell(cuda).reference.model is cpu
    assert cell(cuda, devices=()).reference is None and not cell(cuda, devices=()).compares_something


def test_the_reference_device_is_a_parameter(write_suite):
    metrics = "\n  - name: device-speed-up\n    params: {reference: cuda}"
    loaded = load(write_suite(twin_suite("cpu", "cuda", metrics=metrics)))
    cpu, cuda = loaded.entries["models"]
    [cell] = [c for c in cells_of(loaded, "device-speed-up") if c.explainer.name == "random"]
    assert cell.model is cpu and cell.reference.model is cuda


def test_a_model_without_a_twin_on_the_reference_device_is_a_one_line_error(write_suite):
    text = twin_suite(None, "cuda")
    path = write_suite(text)
    line = text.splitlines().index("    device: cuda") + 1
    assert error_of(path) == (
        f"{path}:{line}: models[1].device: metric 'device-speed-up' compares model "
        "'bow(dim=8, max_epochs=20) on cuda' with the same model on cpu, which the suite does not list: "
        "add this entry again with device: cpu"
    )


def test_a_twin_must_be_the_same_model_but_for_its_device(write_suite):
    text = twin_suite("cpu", "cuda").replace(
        "    params: {dim: 8, max_epochs: 20}\n    device: cuda",
        "    params: {dim: 4, max_epochs: 20}\n    device: cuda",
    )
    assert "with the same model on cpu, which the suite does not list" in error_of(write_suite(text))


def test_a_metric_comparing_devices_needs_a_reference_parameter():
    class NoReference(DeviceSpeedUp):
        name: ClassVar[str] = "no-reference"
        Params = Params

    assert (
        metadata_problem(NoReference)
        == "metric 'no-reference' compares devices but its Params have no 'reference' field"
    )
    assert metadata_problem(DeviceSpeedUp) is None


def test_device_speed_up_is_the_reference_seconds_over_the_cells_per_document(classifier):
    on_cuda = [
        timed(classifier, "good", 0.5, 0),
        timed(classifier, "bad", 0.5, 0),
        timed(classifier, "the", 0.2, 1),
    ]
    on_cpu = [
        timed(classifier, "the", 3.0, 1),
        timed(classifier, "good", 2.0, 0),
        timed(classifier, "bad", 1.0, 0),
    ]
    data = metric_input(classifier, on_cuda)
    data.reference = metric_input(classifier, on_cpu)  # paired by example id, not position
    output = DeviceSpeedUp().compute(data)
    np.testing.assert_allclose(output.values, [4.0, 2.0, 15.0])
    assert list(output.units) == ["batch 0", "batch 0", "batch 1"]
    on_cuda[2].seconds = 0.0  # no time measured: undefined, not infinite
    assert np.isnan(DeviceSpeedUp().compute(data).values[2])
    assert (DeviceSpeedUp.direction, DeviceSpeedUp.family, DeviceSpeedUp.compares) == (
        "higher",
        "cost",
        "device",
    )


# -- cells on a device this machine lacks are skipped with the reason ---------------------------------


def test_cells_on_cuda_are_unavailable_without_cuda_and_say_why(write_suite):
    loaded = load(write_suite(twin_suite("cpu", "cuda", None)))
    reasons = {(cell.model.device, cell.metric.name): unavailable(cell, False) for cell in expand(loaded)}
    assert reasons[("cpu", "runtime")] is None and reasons[(None, "runtime")] is None
    assert (
        reasons[("cuda", "runtime")]
        == reasons[("cuda", "device-speed-up")]
        == (
            "device 'cuda' of model 'bow(dim=8, max_epochs=20) on cuda' is not available on this machine "
            "(torch.cuda.is_available() is False); run this suite where CUDA is"
        )
    )
    assert all(unavailable(cell, True) is None for cell in expand(loaded))


def test_a_cpu_cell_comparing_with_cuda_is_unavailable_without_cuda(write_suite):
    metrics = "\n  - name: runtime\n  - name: device-speed-up\n    params: {reference: cuda}"
    loaded = load(write_suite(twin_suite("cpu", "cuda", metrics=metrics)))
    cpu = [cell for cell in expand(loaded) if cell.model.device == "cpu"]
    assert [unavailable(cell, False) is None for cell in cpu] == [True, False, True, False]  # runtime ok
    assert "model 'bow(dim=8, max_epochs=20) on cuda'" in unavailable(cpu[1], False)


def test_the_shipped_runtime_suite_times_every_explainer_on_both_devices():
    loaded = load(REPO / "suites" / "runtime.yaml")
    cpu, cuda = loaded.entries["models"]
    assert (cpu.device, cuda.device) == ("cpu", "cuda") and cpu.params_json == cuda.params_json
    cells = expand(loaded)
    explainers = loaded.entries["explainers"]
    compared = [cell for cell in cells if cell.metric.name == "device-speed-up"]
    assert [cell.explainer for cell in compared] == explainers and {c.model for c in compared} == {cuda}
    assert all(cell.reference.model is cpu for cell in compared)
    assert sum(cell.metric.name == "runtime" for cell in cells) == 2 * len(explainers)
    skipped = [cell for cell in cells if unavailable(cell, cuda_available=False)]
    assert {cell.model for cell in skipped} == {cuda} and len(skipped) == 2 * len(explainers)


# -- the store and the report -------------------------------------------------------------------------


@pytest.fixture
def stored_run(write_suite, tmp_path):
    """A run written by hand (no runner): the CPU runtime cells done, the CUDA cells skipped here."""
    path = write_suite(twin_suite("cpu", "cuda"))
    loaded = load(path)
    store = Store(tmp_path / "results")
    store.create_run("r1", loaded.suite, loaded.hash, str(path), loaded.text, "cpu", None, {}, {})
    skipped = []
    for cell in expand(loaded):
        reason = unavailable(cell, cuda_available=False)
        if reason is None:
            store.record_cell("r1", cell, ["a", "b"], [0.25, 0.5], seconds=0.1)
        else:
            store.skip_cell("r1", cell, reason)
            skipped.append(cell)
    store.finish_run("r1", "complete")
    return store, skipped


def test_a_skipped_cell_is_stored_with_its_reason_and_is_final_for_the_run(stored_run):
    store, skipped = stored_run
    rows = {row["cell_id"]: row for row in store.cells("r1")}
    assert {rows[cell.id]["status"] for cell in skipped} == {"skipped"}
    assert all("is not available on this machine" in rows[cell.id]["error"] for cell in skipped)
    assert {cell.id for cell in skipped} <= store.done_cells("r1")  # a resume does not retry them
    assert len(store.done_cells("r1")) == len(rows)


def test_the_report_shows_skipped_cells_in_place_and_lists_why_never_as_failures(stored_run):
    store, skipped = stored_run
    report = Report.build(store, "r1")
    assert report.failed == [] and len(report.skipped) == len(skipped) == 4
    [cost] = report.tables
    assert len(cost.skipped) == 4 and len(cost.cells) == 2  # the CPU runtimes, and the CUDA cells' places
    reason = unavailable(skipped[0], cuda_available=False)
    markdown = render(report, "md")
    assert "4 cell(s) skipped, not run on this machine:" in markdown and f"- 4 cell(s): {reason}" in markdown
    assert "failed" not in markdown
    table_lines = [line for line in markdown.splitlines() if line.startswith("| random")]
    assert table_lines and "skipped" in table_lines[0]
    document = json.loads(render(report, "json"))
    assert document["failed_cells"] == [] and len(document["skipped_cells"]) == 4
    assert {cell["reason"] for cell in document["skipped_cells"]} == {reason}
    assert {cell["model"] for cell in document["skipped_cells"]} == {"bow(dim=8, max_epochs=20) on cuda"}
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert {row["model"] for row in rows} == {"bow(dim=8, max_epochs=20) on cpu"}  # values only


def test_validate_counts_and_names_the_cells_to_be_skipped_here(write_suite):
    path = write_suite(twin_suite("cpu", "cuda"))
    no_cuda = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # whatever this machine has
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        env=no_cuda,
    )
    assert result.returncode == 0, result.stderr
    assert "valid — 6 cells" in result.stdout and "4 to be skipped on this machine" in result.stdout
    assert (
        "  4 to be skipped: device 'cuda' of model 'bow(dim=8, max_epochs=20) on cuda' is not available"
    ) in result.stdout
