"""The forward-pass service (``harness.forward``): each distinct perturbed input runs through the model
once per run whichever metric, explainer or cell asks for it, is read back from the cache by a later run
on the same model (unless altered on disk: then it is computed again), and the values are those of the
straightforward computation."""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing

import numpy as np
import pytest
import torch
from conftest import tiny_suite_text
from scipy.stats import kendalltau

import harness
import harness.forward
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite

BINS = (10, 50, 100)
EXPLAINERS = "\n  - name: random\n  - name: saliency\n    params: {reduction: input_x_gradient}"
METRICS = f"""
  - name: comprehensiveness
    params: {{bins: {list(BINS)}}}
  - name: sufficiency
    params: {{bins: {list(BINS)}}}
  - name: loo-correlation"""


class Seen(list):
    """Sequences run through the model (tuples of ids), and how many calls of the service ran them."""

    calls = 0


@pytest.fixture
def counted(monkeypatch):
    """Every sequence the model is run on through the service, as a tuple of ids."""
    seen = Seen()
    forward = harness.forward._forward

    def counting(classifier, sequences, types, batch_size, **kernels):
        seen.extend(tuple(int(i) for i in sequence) for sequence in sequences)
        seen.calls += 1
        return forward(classifier, sequences, types, batch_size, **kernels)

    monkeypatch.setattr(harness.forward, "_forward", counting)
    return seen


def run(tmp_path, metrics: str, cache: str = "cache", results: str = "results"):
    suite = tmp_path / "suite.yaml"
    suite.write_text(tiny_suite_text(explainers=EXPLAINERS, metrics=metrics))
    loaded = load_suite(suite, get_registry())
    options = RunOptions(results_dir=tmp_path / results, cache_dir=tmp_path / cache, progress=False)
    result = Runner(loaded, options).run()
    assert not result.failed
    return Store(tmp_path / results), result.run_id


def probability(classifier, ids: list[int], target: int) -> float:
    """p(target | ids), one input per forward pass: the straightforward way."""
    with torch.no_grad():
        logits = classifier.logits(
            input_ids=torch.tensor([ids], dtype=torch.long),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        )
    return float(torch.softmax(logits.double(), dim=-1)[0, target])


def expected(classifier, attribution: dict) -> tuple[dict[str, float], set[tuple[int, ...]]]:
    """The three metrics of one attribution computed from their definitions with this test's own
    ranking (highest score first, ties in text order), and the perturbed inputs they need."""
    ids, scores, target = attribution["input_ids"], attribution["scores"], attribution["target"]
    real = [i for i, segment in enumerate(attribution["segments"]) if segment >= 0]
    ranked = sorted(real, key=lambda i: (-scores[i], i))
    full = math.exp(attribution["log_probabilities"][target])
    needed: set[tuple[int, ...]] = set()

    def p(kept_positions) -> float:
        kept = [ids[i] for i in range(len(ids)) if i in kept_positions]
        if kept != ids:
            needed.add(tuple(kept))
        return probability(classifier, kept, target) if kept != ids else full

    everything = set(range(len(ids)))
    specials = everything - set(real)
    comprehensiveness, sufficiency = [], []
    for k in BINS:
        count = min(max(int(math.floor(k * len(real) / 100 + 0.5)), 1), len(real))
        top = set(ranked[:count])
        comprehensiveness.append(full - p(everything - top))
        sufficiency.append(full - p(specials | top))
    drops = [full - p(everything - {i}) for i in real]
    tau = kendalltau([scores[i] for i in real], drops).statistic if len(real) > 1 else math.nan
    values = {
        "comprehensiveness": float(np.mean(comprehensiveness)),
        "sufficiency": float(np.mean(sufficiency)),
        "loo-correlation": float(tau),
    }
    return values, needed


def test_each_distinct_perturbed_input_runs_once_and_values_equal_the_straightforward_ones(tmp_path, counted):
    store, run_id = run(tmp_path, METRICS)
    records = list(store.records(run_id))
    attributions = list(store.attributions(run_id))
    assert {a["explainer"] for a in attributions} == {"random", "saliency"}
    classifier = _model(tmp_path)
    needed: set[tuple[int, ...]] = set()
    checked = 0
    for attribution in attributions:
        values, rows = expected(classifier, attribution)
        needed |= rows
        for record in records:
            if all(
                record[key] == attribution[key] for key in ("example_id", "explainer", "explainer_params")
            ):
                assert record["value"] == pytest.approx(values[record["metric"]], abs=1e-6, nan_ok=True)
                checked += 1
    assert checked == len(records) == 3 * len(attributions)
    # Every perturbed input the metrics of both explainers need, and nothing twice: the leave-one-out
    # inputs are shared by the two explainers, the 100 % steps by every curve.
    assert len(counted) == len(set(counted)) == len(needed)
    assert set(counted) == needed
    # The three metrics of an explanation were planned together: one call of the service each.
    assert counted.calls == len({a["explainer"] for a in attributions}) == 2
    asked = sum(2 * len(BINS) + len([s for s in a["segments"] if s >= 0]) for a in attributions)
    assert len(needed) < asked  # what the cells asked for, each on its own


def test_a_second_suite_on_the_same_model_reads_the_rows_back_from_the_cache(tmp_path, counted):
    run(tmp_path, "\n  - name: loo-correlation", results="first")
    first = set(counted)
    assert first
    counted.clear()
    run(tmp_path, METRICS, results="second")  # the same leave-one-out inputs, and the curves' new ones
    assert counted and not (set(counted) & first)


def test_a_metric_that_cannot_be_planned_fails_its_own_cells_and_the_others_are_planned_together(
    tmp_path, counted, monkeypatch
):
    from plugins.metrics.eraser import Sufficiency

    def broken(self, data):
        raise harness.PluginError("sufficiency cannot build its removals")

    monkeypatch.setattr(Sufficiency, "removals", broken)
    suite = tmp_path / "suite.yaml"
    suite.write_text(tiny_suite_text(explainers=EXPLAINERS, metrics=METRICS))
    loaded = load_suite(suite, get_registry())
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    result = Runner(loaded, options).run()
    assert sorted(cell.metric.name for cell, _ in result.failed) == ["sufficiency", "sufficiency"]
    assert all("cannot build its removals" in error for _, error in result.failed)
    assert counted.calls == 2  # comprehensiveness and loo-correlation, together, per explanation
    assert len(counted) == len(set(counted))


def test_planned_passes_that_fail_leave_each_metric_to_compute_its_own(tmp_path, counted, monkeypatch):
    import harness.stages

    def failing(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(harness.stages, "evaluate_together", failing)
    store, run_id = run(tmp_path, METRICS)
    assert len(list(store.records(run_id))) == 3 * 2 * 6  # every cell computed, none failed
    # Each metric asked for its own rows (the second explanation's leave-one-out rows were all held
    # already): more calls than the two planned ones, still no row twice.
    assert 2 < counted.calls <= 3 * 2
    assert len(counted) == len(set(counted))


def _model(tmp_path):
    """The run's model, built again as the runner built it (bow training is deterministic)."""
    loaded = load_suite(tmp_path / "suite.yaml", get_registry())
    dataset_entry, model_entry = loaded.entries["datasets"][0], loaded.entries["models"][0]
    dataset = dataset_entry.cls(dataset_entry.params).load()
    return model_entry.cls(model_entry.params).build(dataset, seed=0, device=torch.device("cpu"))


def test_the_memo_is_bounded_and_forgets_the_least_recently_used_rows():
    class Constant:
        labels = ("a", "b")
        device = torch.device("cpu")
        pad_token_id = 0

        def logits(self, *, input_ids, attention_mask, token_type_ids=None):
            return input_ids.sum(1, keepdim=True).double().expand(-1, 2) * torch.tensor([0.0, 1.0])

    constant = Constant()  # the service holds its classifier weakly
    service = harness.forward.ForwardService(
        constant, memo_bytes=3 * (8 + 16 + harness.forward.ENTRY_OVERHEAD)
    )  # three rows of an 8-byte key and two float64
    for ids in ([1], [2], [3], [4]):
        service.log_probabilities([np.array(ids)], None, 8)
    assert len(service.memo) == 3 and harness.forward._key(np.array([1]), None) not in service.memo
    service.log_probabilities([np.array([2]), np.array([2]), np.array([9])], None, 8)
    assert service.stats.computed == 5  # [2] was held; [9] is new; the memo still holds three rows
    assert len(service.memo) == 3


def test_rows_asked_for_without_sharing_are_computed_but_neither_kept_nor_stored(tmp_path):
    classifier = _model_free_constant()
    service = harness.forward.ForwardService(classifier)
    service.attach_store(tmp_path / "rows.sqlite", "model-key")
    shared = service.log_probabilities([np.array([5])], None, 8)
    once = service.log_probabilities([np.array([6]), np.array([5])], None, 8, share=False)
    assert list(service.memo) == [harness.forward._key(np.array([5]), None)]
    np.testing.assert_array_equal(once[1], shared[0])
    assert set(service.store.read([harness.forward._key(np.array([i]), None) for i in (5, 6)])) == {
        harness.forward._key(np.array([5]), None)
    }


def test_a_stored_row_altered_on_disk_is_logged_and_recomputed_never_served(tmp_path, caplog):
    path, ids = tmp_path / harness.forward.FORWARD_ROWS, np.array([5])
    classifier = _model_free_constant()  # the service holds its classifier weakly
    writer = harness.forward.ForwardService(classifier)
    writer.attach_store(path, "model-key")
    right = writer.log_probabilities([ids], None, 8)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE forward_rows SET value=?", (np.array([-1.0, -2.0]).tobytes(),))
    reader = harness.forward.ForwardService(classifier)  # another run: nothing in memory
    reader.attach_store(path, "model-key")
    with caplog.at_level("WARNING", logger="bench.forward"):
        served = reader.log_probabilities([ids], None, 8)
    np.testing.assert_array_equal(served, right)
    assert (reader.stats.stored, reader.stats.computed) == (0, 1)
    assert "1 forward row(s)" in caplog.text and "do not match their digests" in caplog.text
    key = harness.forward._key(ids, None)
    np.testing.assert_array_equal(reader.store.read([key])[key], right[0])  # stored again, correct


def test_a_row_stored_before_digests_is_read_and_a_run_without_the_cache_rewrites_it_with_one(tmp_path):
    path, ids = tmp_path / harness.forward.FORWARD_ROWS, np.array([5])
    key = harness.forward._key(ids, None)
    with closing(sqlite3.connect(path)) as db, db:  # the table as an earlier harness wrote it
        db.execute(
            "CREATE TABLE forward_rows (model TEXT NOT NULL, sequence BLOB NOT NULL, value BLOB NOT NULL, "
            "PRIMARY KEY (model, sequence))"
        )
        db.execute(
            "INSERT INTO forward_rows VALUES (?, ?, ?)", ("model-key", key, np.array([0.5, 0.25]).tobytes())
        )
    classifier = _model_free_constant()  # the service holds its classifier weakly
    service = harness.forward.ForwardService(classifier)
    service.attach_store(path, "model-key")
    np.testing.assert_array_equal(service.log_probabilities([ids], None, 8), [[0.5, 0.25]])  # unchecked
    refresh = harness.forward.ForwardService(classifier)
    refresh.attach_store(path, "model-key", read=False)  # --no-cache: computed again, stored with a digest
    right = refresh.log_probabilities([ids], None, 8)
    with closing(sqlite3.connect(path)) as db:
        [(digest,)] = db.execute("SELECT digest FROM forward_rows").fetchall()
    assert digest is not None
    np.testing.assert_array_equal(service.store.read([key])[key], right[0])


def _model_free_constant():
    class Constant:
        labels = ("a", "b")
        device = torch.device("cpu")
        pad_token_id = 0

        def logits(self, *, input_ids, attention_mask, token_type_ids=None):
            return input_ids.sum(1, keepdim=True).double().expand(-1, 2) * torch.tensor([0.0, 1.0])

    return Constant()


class _Encoder(torch.nn.Module):
    """Embeddings, then transformer-sized linear layers (384 → 1536 → 384) and a two-class head."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embeddings = torch.nn.Embedding(100, 384)
        self.up, self.down, self.head = (
            torch.nn.Linear(384, 1536), torch.nn.Linear(1536, 384), torch.nn.Linear(384, 2)
        )  # fmt: skip
        for parameter in self.parameters():
            parameter.data = torch.randn(parameter.shape, generator=generator) / 8

    def forward(self, ids, mask):
        hidden = self.embeddings(ids)
        hidden = hidden + self.down(torch.nn.functional.gelu(self.up(hidden)))
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.head(pooled)


class _LinearClassifier:
    labels = ("a", "b")
    device = torch.device("cpu")
    pad_token_id = 0

    def __init__(self):
        self.network = _Encoder()

    def logits(self, *, input_ids, attention_mask, token_type_ids=None):
        return self.network(input_ids, attention_mask)

    def torch_modules(self):
        return [self.network]


def test_the_services_passes_run_linear_layers_through_onednn_within_1e6_and_leave_the_model_as_built(
    monkeypatch,
):
    classifier = _LinearClassifier()
    used = []
    linear = torch._C._nn.mkldnn_linear
    monkeypatch.setattr(torch._C._nn, "mkldnn_linear", lambda *a: used.append(1) or linear(*a))
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 100, size=n) for n in rng.integers(3, 40, size=64)]
    service = harness.forward.ForwardService(classifier)
    if torch.backends.mkldnn.is_available():
        service.kernels = harness.forward.ONEDNN  # whichever is faster on this machine
    served = service.log_probabilities(sequences, None, batch_size=8)
    plain, exact = [], []
    for sequence in sequences:
        ids = torch.from_numpy(sequence[None].astype(np.int64))
        logits = classifier.logits(input_ids=ids, attention_mask=torch.ones_like(ids))  # gradients on
        plain.append(torch.log_softmax(logits.double(), -1)[0].detach().numpy())
        network64 = classifier.network.double()
        exact.append(torch.log_softmax(network64(ids, torch.ones_like(ids)), -1)[0].detach().numpy())
        classifier.network.float()
    plain, exact = np.array(plain), np.array(exact)
    # Probabilities (what metrics are made of) within 1e-6 of PyTorch's own float32 kernels, and no
    # further from the float64 result than float32 rounding takes those kernels.
    np.testing.assert_allclose(np.exp(served), np.exp(plain), atol=1e-6, rtol=0)
    assert np.abs(served - exact).max() <= 4 * np.abs(plain - exact).max()
    if torch.backends.mkldnn.is_available():
        assert used and service.kernels == harness.forward.ONEDNN
    # Outside the service's passes the layers are torch's own (captum's LRP looks at exact types).
    assert {type(m) for m in classifier.network.modules()} == {_Encoder, torch.nn.Embedding, torch.nn.Linear}


def test_a_onednn_layer_with_gradients_is_exactly_torchs_linear():
    layer = torch.nn.Linear(16, 4)
    x = torch.randn(3, 16, requires_grad=True)
    expected = layer(x)
    expected.sum().backward()
    expected_grad = x.grad.clone()
    x.grad = None
    layer.__class__ = harness.forward.OneDNNLinear
    output = layer(x)
    output.sum().backward()
    assert torch.equal(output, expected) and torch.equal(x.grad, expected_grad)


def test_requests_planned_together_give_what_each_gives_on_its_own_and_each_row_once(counted):
    from harness import MetricInput, Perturbations, evaluate, evaluate_together
    from harness.testing import KitClassifier, kit_attributions, kit_dataset
    from plugins.metrics.eraser import Comprehensiveness
    from plugins.metrics.faithfulness import LooCorrelation, SwitchingPoint

    dataset = kit_dataset()
    classifier = KitClassifier(dataset)
    attributions = kit_attributions(classifier, dataset.test, order="random")
    data = MetricInput(attributions, {}, dataset, load_classifier=lambda: classifier, batch_size=4)
    metrics = [Comprehensiveness(), LooCorrelation(), SwitchingPoint()]  # delete, delete, unk
    requests = [metric.perturbations(data) for metric in metrics]
    together = evaluate_together(classifier, requests, batch_size=4, max_rows=20)  # several chunks
    planned = list(counted)
    assert len(planned) == len(set(planned))
    for metric, request, matrices in zip(metrics, requests, together, strict=True):
        harness.forward.forward_service(classifier).clear()
        alone = evaluate(
            classifier, request.attributions, request.removals, masking=request.masking, batch_size=4
        )
        for a, b in zip(matrices, alone, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-12)
        values = [
            getattr(out, "values", out) for out in (metric.reduce(data, matrices), metric.compute(data))
        ]
        np.testing.assert_allclose(*values, atol=1e-12)
    assert isinstance(requests[0], Perturbations) and requests[2].masking == "unk"


class _TimedClassifier(_LinearClassifier):
    pad_token_id = 0


@pytest.fixture
def kernel_times(monkeypatch):
    """``time_kernels`` answering what the test says and counting its calls; no remembered choice."""
    monkeypatch.setattr(harness.forward, "_CHOICES", {})
    monkeypatch.delenv(harness.forward.KERNELS_ENV, raising=False)
    monkeypatch.setattr(harness.forward, "_onednn_works", lambda: True)
    calls = []

    def answer(seconds):
        monkeypatch.setattr(
            harness.forward, "time_kernels", lambda classifier: calls.append(classifier) or seconds
        )

    return answer, calls


def test_the_kernels_are_the_faster_of_the_two_as_measured_and_pytorchs_on_a_tie(kernel_times):
    answer, calls = kernel_times
    classifier = _TimedClassifier()  # the service holds it weakly
    answer({harness.forward.TORCH_KERNELS: 0.10, harness.forward.ONEDNN: 0.14})  # MKL faster (2026-12-07)
    assert harness.forward.ForwardService(classifier).kernels is None
    harness.forward._CHOICES.clear()
    answer({harness.forward.TORCH_KERNELS: 0.27, harness.forward.ONEDNN: 0.10})  # oneDNN faster (2026-12-03)
    assert harness.forward.ForwardService(classifier).kernels == harness.forward.ONEDNN
    harness.forward._CHOICES.clear()
    answer({harness.forward.TORCH_KERNELS: 0.100, harness.forward.ONEDNN: 0.097})  # within the margin
    assert harness.forward.ForwardService(classifier).kernels is None
    assert len(calls) == 3


def test_the_choice_is_measured_once_per_machine_and_model_shapes_and_kept_in_the_cache(
    kernel_times, tmp_path
):
    answer, calls = kernel_times
    answer({harness.forward.TORCH_KERNELS: 0.27, harness.forward.ONEDNN: 0.10})
    classifier = _TimedClassifier()  # the service holds it weakly
    service = harness.forward.ForwardService(classifier)
    service.attach_store(tmp_path / harness.forward.FORWARD_ROWS, "model-key")
    assert service.kernels == harness.forward.ONEDNN and service.store.model_key == "model-key:onednn-linear"
    record = json.loads((tmp_path / harness.forward.KERNELS_FILE).read_text())
    assert [v["kernels"] for v in record.values()] == [harness.forward.ONEDNN]
    assert list(record) == [harness.forward.kernel_signature(_TimedClassifier())]
    # Another process (nothing remembered in memory) reads the choice back: the same kernels, the same
    # rows, whatever a new measurement would say.
    harness.forward._CHOICES.clear()
    answer({harness.forward.TORCH_KERNELS: 0.10, harness.forward.ONEDNN: 0.27})
    again = harness.forward.ForwardService(classifier)
    again.attach_store(tmp_path / harness.forward.FORWARD_ROWS, "model-key")
    assert again.kernels == harness.forward.ONEDNN and len(calls) == 1


def test_a_choice_made_before_the_store_is_attached_is_kept_in_the_cache(kernel_times, tmp_path):
    # A model's load checks run passes before the runner attaches the store: the choice made then is
    # the one recorded, so that the next run reads it instead of measuring again.
    answer, calls = kernel_times
    answer({harness.forward.TORCH_KERNELS: 0.10, harness.forward.ONEDNN: 0.27})
    classifier = _TimedClassifier()  # the service holds it weakly
    service = harness.forward.ForwardService(classifier)
    assert service.kernels is None  # chosen in the process, nothing recorded yet
    service.attach_store(tmp_path / harness.forward.FORWARD_ROWS, "model-key")
    record = json.loads((tmp_path / harness.forward.KERNELS_FILE).read_text())
    assert [v["kernels"] for v in record.values()] == [harness.forward.TORCH_KERNELS] and len(calls) == 1


def test_the_environment_sets_the_kernels_without_measuring_and_a_bad_value_is_named(
    kernel_times, monkeypatch
):
    answer, calls = kernel_times
    classifier = _TimedClassifier()  # the service holds it weakly
    answer({harness.forward.TORCH_KERNELS: 0.27, harness.forward.ONEDNN: 0.10})
    monkeypatch.setenv(harness.forward.KERNELS_ENV, "torch")
    assert harness.forward.ForwardService(classifier).kernels is None
    monkeypatch.setenv(harness.forward.KERNELS_ENV, "onednn-linear")
    assert harness.forward.ForwardService(classifier).kernels == harness.forward.ONEDNN
    assert calls == []
    monkeypatch.setenv(harness.forward.KERNELS_ENV, "mkl")
    with pytest.raises(ValueError, match="BENCH_FORWARD_KERNELS='mkl'"):
        _ = harness.forward.ForwardService(classifier).kernels


def test_time_kernels_times_both_on_the_classifier_and_leaves_it_as_built():
    classifier = _TimedClassifier()
    seconds = harness.forward.time_kernels(classifier, rounds=1, tokens=64)
    assert set(seconds) == {harness.forward.TORCH_KERNELS, harness.forward.ONEDNN}
    assert all(0 < s < float("inf") for s in seconds.values())
    assert {type(m) for m in classifier.network.modules()} == {_Encoder, torch.nn.Embedding, torch.nn.Linear}


def test_each_pass_holds_sequences_of_one_length_unpadded():
    classifier = _TimedClassifier()
    passes = []
    logits = classifier.logits

    def spy(*, input_ids, attention_mask, token_type_ids=None):
        passes.append((tuple(input_ids.shape), bool(attention_mask.all())))
        return logits(input_ids=input_ids, attention_mask=attention_mask)

    classifier.logits = spy
    rng = np.random.default_rng(1)
    sequences = [rng.integers(1, 100, size=n) for n in [5, 7, 5, 9, 7, 5]]
    service = harness.forward.ForwardService(classifier)
    service.kernels = None  # no passes to choose them
    service.log_probabilities(sequences, None, batch_size=2)
    assert sorted(passes) == [((1, 9), True), ((2, 7), True), ((3, 5), True)]
