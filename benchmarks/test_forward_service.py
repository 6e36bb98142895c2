"""The forward-pass service on ferret's three metrics: comprehensiveness and sufficiency at 10 bins
(10 … 100 % of the tokens, deletion) and leave-one-out correlation, for every explanation of 50 SST-2
sentences by 2 and by 6 explainers.

Four ways to the same values, timed alike (one untimed warm-up, then the mean of ``ROUNDS`` timed
runs, the service's memo emptied before each run, no disk store), except the loop (one timed run: a
pass of one input has nothing to warm up beyond the first):

- **loop**: the straightforward computation, one forward pass per example, explanation, bin and
  left-out token (batch of one, PyTorch's own kernels), with this file's own ranking code;
- **per cell**: the engine as each metric cell uses it on its own, every cell computing its own rows
  (what the harness did before the service: the memo is emptied between cells);
- **service**: what the runner does: per explanation, the three metrics' perturbations planned together
  (``evaluate_together``, the plan's ``perturb`` task), then each metric cell computing its values
  from the rows the service holds; each distinct perturbed input computed once for the whole run;
- **service, the other kernels**: the same with the kernels the service did not choose on this machine
  (PyTorch's MKL or oneDNN for the linear layers: ``harness.forward.choose_kernels`` keeps the faster),
  to show what sharing rows and what the kernels each contribute.

Reported per configuration, in ``extra_info`` and printed: seconds per example (all its explanations
and the three metrics), the rows each way runs through the model (the loop's, the cells' sum, the
service's) and the distinct rows the metrics need, which the service's equal. No assertion on
seconds: they depend on the machine; the values must agree to 1e-6.

Model: minilm-head (the real 6-layer MiniLM, head trained briefly on 64 SST-2 train sentences); data:
the first 50 SST-2 dev sentences from ../shared/data (the test fixture's sentences when absent).
Run with ``make benchmark`` or ``pytest benchmarks/test_forward_service.py --benchmark-only -s``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from removal_rows import distinct_rows
from scipy.stats import kendalltau
from sst2_setup import explain_test_split, minilm_head, sst2_dataset

import harness.forward
from harness import Attribution, MetricInput
from harness.forward import forward_service
from harness.perturb import evaluate_together
from plugins.explainers.attention import Attention
from plugins.explainers.gradient import IntegratedGradients, Saliency
from plugins.explainers.occlusion import Occlusion
from plugins.explainers.random import RandomExplainer
from plugins.metrics.eraser import Comprehensiveness, Sufficiency
from plugins.metrics.faithfulness import LooCorrelation

N_EXAMPLES = 50
BINS = tuple(range(10, 101, 10))
ROUNDS, WARMUP_ROUNDS = 2, 1
BATCH_SIZE = 16

EXPLAINERS = {
    "gradient": lambda: Saliency(Saliency.Params(reduction="l2")),
    "input×gradient": lambda: Saliency(Saliency.Params(reduction="input_x_gradient")),
    "integrated-gradients": lambda: IntegratedGradients(IntegratedGradients.Params(n_steps=20)),
    "occlusion": lambda: Occlusion(Occlusion.Params(masking="delete")),
    "attention": lambda: Attention(),
    "random": lambda: RandomExplainer(seed=0),
}


@pytest.fixture(scope="module")
def setup():
    dataset = sst2_dataset(N_EXAMPLES)
    classifier = minilm_head(dataset)
    explanations: dict[str, list[Attribution]] = {
        name: explain_test_split(classifier, dataset, make(), BATCH_SIZE) for name, make in EXPLAINERS.items()
    }
    forward_service(classifier).clear()  # occlusion's rows would make the first timed run look warm
    return classifier, dataset, explanations


def metrics():
    return [
        Comprehensiveness(Comprehensiveness.Params(bins=BINS, masking="delete")),
        Sufficiency(Sufficiency.Params(bins=BINS, masking="delete")),
        LooCorrelation(),
    ]


def run_cells(classifier, dataset, explanations, share: bool) -> tuple[dict, int]:
    """Every (explainer, metric) cell's values through the engine. ``share``: as the runner does, the
    metrics of an explanation planned together first (the ``perturb`` task), then each cell computing
    its values from the service's rows; otherwise the memo is emptied before each cell (each computes
    its own rows). Returns the values and the rows computed."""
    service = forward_service(classifier)
    service.clear()
    computed = service.stats.computed
    values = {}
    for name, attributions in explanations.items():
        data = MetricInput(
            attributions, {}, dataset, load_classifier=lambda: classifier, batch_size=BATCH_SIZE
        )
        if share:
            requests = [metric.perturbations(data) for metric in metrics()]
            evaluate_together(classifier, requests, batch_size=BATCH_SIZE)
        for metric in metrics():
            if not share:
                service.clear()
            output = metric.compute(data)
            values[(name, metric.name)] = np.asarray(getattr(output, "values", output), dtype=np.float64)
    return values, service.stats.computed - computed


def run_loop(classifier, explanations) -> tuple[dict, int]:
    """The straightforward computation: one forward pass per perturbed input, own ranking code."""
    rows = 0

    def probability(ids: list[int], target: int) -> float:
        nonlocal rows
        rows += 1
        input_ids = torch.tensor([ids], dtype=torch.long)
        with torch.inference_mode():
            logits = classifier.logits(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
        return float(torch.softmax(logits.double(), -1)[0, target])

    values = {}
    for name, attributions in explanations.items():
        comprehensiveness, sufficiency, loo = [], [], []
        for a in attributions:
            real = [i for i, s in enumerate(a.segments) if s >= 0]
            ranked = sorted(real, key=lambda i: (-a.scores[i], i))
            full = math.exp(a.log_probabilities[a.target])
            removed_drops, kept_drops = [], []
            for k in BINS:
                top = set(ranked[: min(max(int(math.floor(k * len(real) / 100 + 0.5)), 1), len(real))])
                without = [t for i, t in enumerate(a.input_ids) if i not in top]
                only = [t for i, t in enumerate(a.input_ids) if i in top or a.segments[i] < 0]
                removed_drops.append(full - probability(without, a.target))
                kept_drops.append(
                    full - (full if len(only) == len(a.input_ids) else probability(only, a.target))
                )
            comprehensiveness.append(np.mean(removed_drops))
            sufficiency.append(np.mean(kept_drops))
            drops = [full - probability(a.input_ids[:i] + a.input_ids[i + 1 :], a.target) for i in real]
            scores = [a.scores[i] for i in real]
            constant = len(real) < 2 or np.ptp(scores) == 0 or np.ptp(drops) == 0
            loo.append(math.nan if constant else kendalltau(scores, drops).statistic)
        values[(name, "comprehensiveness")] = np.asarray(comprehensiveness)
        values[(name, "sufficiency")] = np.asarray(sufficiency)
        values[(name, "loo-correlation")] = np.asarray(loo)
    return values, rows


def mean_seconds(function, rounds: int = ROUNDS, warmup_rounds: int = WARMUP_ROUNDS):
    for _ in range(warmup_rounds):
        function()
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return result, float(np.mean(seconds))


@pytest.mark.parametrize("n_explainers", [2, 6])
def test_the_service_computes_each_distinct_row_once_and_matches_the_loop(benchmark, setup, n_explainers):
    classifier, dataset, explanations = setup
    chosen = dict(list(explanations.items())[:n_explainers])
    (loop_values, loop_rows), loop_seconds = mean_seconds(lambda: run_loop(classifier, chosen), 1, 0)
    (cell_values, cell_rows), cell_seconds = mean_seconds(
        lambda: run_cells(classifier, dataset, chosen, False)
    )
    service = forward_service(classifier)
    kernels = service.kernels  # chosen by measuring both on this machine
    other = None if kernels == harness.forward.ONEDNN else harness.forward.ONEDNN
    if harness.forward.onednn_kernels(classifier) is None:  # no oneDNN here: PyTorch's twice
        other = None
    service.kernels = other
    (default_values, _), default_seconds = mean_seconds(lambda: run_cells(classifier, dataset, chosen, True))
    service.kernels = kernels
    service_values, service_rows = benchmark.pedantic(
        lambda: run_cells(classifier, dataset, chosen, True),
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=WARMUP_ROUNDS,
    )
    service_seconds = benchmark.stats.stats.mean
    for key, expected in loop_values.items():
        np.testing.assert_allclose(service_values[key], expected, atol=1e-6, err_msg=str(key))
        np.testing.assert_allclose(cell_values[key], expected, atol=1e-6, err_msg=str(key))
        np.testing.assert_allclose(default_values[key], expected, atol=1e-6, err_msg=str(key))
    distinct = distinct_rows(chosen, BINS)
    assert service_rows == distinct
    per_example = {name: seconds / N_EXAMPLES for name, seconds in
                   (("loop", loop_seconds), ("per_cell", cell_seconds), ("service", service_seconds),
                    ("service_other_kernels", default_seconds))}  # fmt: skip
    benchmark.extra_info.update(
        explainers=list(chosen),
        seconds_per_example=per_example,
        rows={"loop": loop_rows, "per_cell": cell_rows, "service": service_rows, "distinct_needed": distinct},
        speedup_over_loop=loop_seconds / service_seconds,
        speedup_over_per_cell=cell_seconds / service_seconds,
        kernels={"chosen": kernels or "torch", "other": other or "torch"},
        speedup_over_other_kernels=default_seconds / service_seconds,
    )
    print(
        f"\n{n_explainers} explainers × comprehensiveness, sufficiency (10 bins), loo-correlation on "
        f"{N_EXAMPLES} sentences: s/example loop {per_example['loop']:.3f}, per cell {per_example['per_cell']:.3f}, "
        f"service {per_example['service']:.3f} with {kernels or 'torch'} kernels (with "
        f"{other or 'torch'}: {per_example['service_other_kernels']:.3f}); rows loop {loop_rows}, per cell {cell_rows}, service "
        f"{service_rows} (distinct needed {distinct})"
    )
