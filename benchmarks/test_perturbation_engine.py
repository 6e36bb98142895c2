"""The batched perturbation engine against a straightforward loop (one forward pass per example and
step) on the same model and attributions: same values, and how much faster.

Both are timed alike: one untimed warm-up run, then the mean of the same number of timed runs; the
ratio loop / engine is printed and stored in the benchmark's ``extra_info``. No assertion on seconds or
on the ratio: wall-clock time depends on the machine, the values do not.

Model: minilm-head (the real 6-layer MiniLM encoder, head trained briefly); data: SST-2 sentences
from ../shared/data when present, else the test fixture's sentences. Run with ``make benchmark``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from sst2_setup import minilm_head, sst2_dataset

from harness import Attribution, MetricInput
from harness.attribution import attributions_from_batch
from harness.forward import forward_service
from harness.perturb import replacement_id, top_count
from plugins.explainers.random import RandomExplainer
from plugins.metrics.eraser import Comprehensiveness

BINS = (1, 5, 10, 20, 50)
N_EXAMPLES = 64
ROUNDS, WARMUP_ROUNDS = 3, 1


@pytest.fixture(scope="module")
def setup():
    dataset = sst2_dataset(N_EXAMPLES)
    test = list(dataset.test)
    classifier = minilm_head(dataset)
    encoding = classifier.encode(test)
    encoding.example_ids = [e.id for e in test]
    log_probabilities = classifier.log_probabilities(encoding)
    predicted = log_probabilities.argmax(-1)
    scores = RandomExplainer(seed=0).explain(classifier, encoding, predicted)
    attributions = attributions_from_batch(
        encoding.example_ids, encoding, scores, predicted, log_probabilities, 0.0
    )
    return classifier, dataset, attributions


def mean_seconds(function, rounds: int = ROUNDS, warmup_rounds: int = WARMUP_ROUNDS):
    """``function``'s result and its mean wall-clock seconds over ``rounds`` calls after ``warmup_rounds``
    untimed ones: the protocol ``benchmark.pedantic`` applies to the engine."""
    for _ in range(warmup_rounds):
        function()
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return result, float(np.mean(seconds))


def loop_comprehensiveness(classifier, attributions: list[Attribution], masking: str) -> np.ndarray:
    """The straightforward version: for each example, for each bin, one forward pass."""
    replacement = replacement_id(classifier, masking)
    values = []
    with torch.inference_mode():

        def probability(ids: list[int], target: int) -> float:
            input_ids = torch.tensor([ids])
            logits = classifier.logits(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
            return float(torch.softmax(logits.double(), -1)[0, target])

        for a in attributions:
            full = probability(a.input_ids, a.target)
            ranking = [int(unit[0]) for unit in a.ranking()]
            drops = []
            for k in BINS:
                removed = set(ranking[: top_count(k, len(ranking))])
                if replacement is None:
                    ids = [t for i, t in enumerate(a.input_ids) if i not in removed]
                else:
                    ids = [replacement if i in removed else t for i, t in enumerate(a.input_ids)]
                drops.append(full - probability(ids, a.target))
            values.append(np.mean(drops))
    return np.asarray(values)


@pytest.mark.parametrize("masking", ["mask", "delete"])
def test_engine_matches_the_loop_and_reports_the_speed_up(benchmark, setup, masking):
    classifier, dataset, attributions = setup
    metric = Comprehensiveness(Comprehensiveness.Params(bins=BINS, masking=masking))
    data = MetricInput(attributions, {}, dataset, load_classifier=lambda: classifier, batch_size=32)

    expected, loop_seconds = mean_seconds(lambda: loop_comprehensiveness(classifier, attributions, masking))
    service = forward_service(classifier)

    def compute():
        service.clear()  # the engine computing, not reading rows an earlier round left in memory
        return metric.compute(data)

    output = benchmark.pedantic(compute, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP_ROUNDS)
    engine_seconds = benchmark.stats.stats.mean
    np.testing.assert_allclose(output.values, expected, atol=1e-6)
    ratio = loop_seconds / engine_seconds
    benchmark.extra_info.update(
        loop_seconds=loop_seconds, engine_seconds=engine_seconds, speedup=ratio, rounds=ROUNDS
    )
    print(f"\n{masking}: loop {loop_seconds:.2f} s, engine {engine_seconds:.2f} s, speed-up {ratio:.1f}×")
