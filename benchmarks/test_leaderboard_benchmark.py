"""Building a leaderboard board of the size the shipped suites give and larger: 15 explainers × 40
columns (4 datasets × 10 metrics) × 100 examples, with a ``random`` row: summaries, paired rank
intervals, every pairwise Wilcoxon test with Holm across the board, tie groups, mean ranks, win rates,
improvement over random and metric agreement. No assertion on seconds: the number of tests and draws
is checked, the time is reported. Run with ``make benchmark``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.report.leaderboard import Chosen, Source, build_board

EXPLAINERS, DATASETS, METRICS, EXAMPLES = 15, 4, 10, 100


def _entries() -> list[Chosen]:
    rng = np.random.default_rng(0)
    source = Source(Path("."), {"run_id": "bench", "started_at": "t"}, [])
    entries = []
    for dataset in range(DATASETS):
        difficulty = rng.normal(size=EXAMPLES)  # an example hard for one explainer is hard for all
        for metric in range(METRICS):
            for explainer in range(EXPLAINERS):
                name = "random" if explainer == 0 else f"explainer-{explainer}"
                values = difficulty + 0.05 * explainer + rng.normal(scale=0.5, size=EXAMPLES)
                cell = {
                    "cell_id": f"{dataset}-{metric}-{explainer}", "dataset_id": f"d{dataset}", "model_id": "m",
                    "variant": "default", "metric_id": f"m{metric}", "examples_fingerprint": f"d{dataset}",
                    "direction": "higher", "dataset": f"data-{dataset}", "model": "model",
                    "metric_label": f"metric-{metric}", "value_range": [None, None], "n_examples": EXAMPLES,
                    "identity": None, "explainer_id": name, "explainer_label": name, "explainer": name,
                }  # fmt: skip
                rows = [
                    {"seed": 0, "example_id": f"e{i}", "value": float(v), "unit": f"e{i}"}
                    for i, v in enumerate(values)
                ]
                entries.append(Chosen(cell, source, rows))
    return entries


def test_a_board_of_15_explainers_and_40_columns(benchmark):
    entries = _entries()
    board = benchmark.pedantic(build_board, args=("faithfulness", entries), rounds=3, warmup_rounds=1)
    pairs = EXPLAINERS * (EXPLAINERS - 1) // 2
    assert len(board.rows) == EXPLAINERS and len(board.columns) == DATASETS * METRICS
    assert len(board.pairwise) == pairs * DATASETS * METRICS and board.n_random == (EXPLAINERS - 1) * 40
    assert len(board.agreements) == DATASETS
    benchmark.extra_info["pairwise_tests"] = len(board.pairwise)
