"""ferret itself, side by side with us, on the user's own model: the same explanations evaluated by
ferret 0.4.2's comprehensiveness, sufficiency and leave-one-out correlation and by ours, in one run, the
two tools taking turns.

- **The model**: a ``BertForSequenceClassification`` folder (``save_pretrained``), the embedded
  all-MiniLM-L6-v2 with an SST-2 head trained on CPU (``ferret_side.user_model``: built once, cached),
  which ferret loads with ``AutoModelForSequenceClassification`` and we through the ``hf`` model plugin.
- **ferret** runs in its own virtual environment (``ferret_side.ferret_python``: created on first use;
  when that cannot be done, this benchmark skips with the reason) as a subprocess
  (``ferret_driver.py``): it explains the first ``N`` SST-2 dev sentences with its six default
  explainers for the predicted class, writes them as the JSONL ``precomputed`` reads, and times its own
  evaluators (``AOPC_Comprehensiveness_Evaluation``, ``AOPC_Sufficiency_Evaluation``,
  ``TauLOO_Evaluation`` through ``Benchmark.evaluate_explanation``) on every explanation when asked.
- **We** read the same explanations with ``precomputed`` on the ``hf`` model and time the runner's path
  for the same three metrics (``comprehensiveness`` and ``sufficiency`` with bins 10 … 100 %, deletion;
  ``loo-correlation``): per explainer, the metrics' perturbations planned together and run through the
  forward-pass service (``evaluate_together``, the ``perturb`` stage), then each metric's values from the
  service's rows (the ``score`` stage), the service's memo emptied before each round and no disk store.

Turns: one untimed warm-up each (the first sentence's explanations), then ferret, us, ferret, us …,
``ROUNDS`` each (``BENCH_FERRET_ROUNDS``, default 3; ``BENCH_FERRET_N`` sentences, default 50; both
tools with torch's default threads, or ``BENCH_FERRET_THREADS`` each). Per
round: seconds per example for each (all six explanations, the three metrics), the paired ratio ferret /
us, the rows each runs through the model (ours: computed by the service; the distinct perturbed inputs
the metrics need, which ours must equal; ferret's: its evaluators' inputs, its baselines included), and
seconds per row. Printed as a table and stored in ``extra_info``; pytest-benchmark's own statistics are
our rounds (ferret's turn is the ``setup`` of each). No assertion on seconds.

**Settings.** ferret's evaluators are given the settings closest to ours (``ferret_driver.py``):
``only_pos=False`` and, per explanation, the token counts our bins remove (``based_on: "k"``). What
still differs, and how the comparison deals with it:

1. ferret leaves out of its mean a bin whose token set equals the previous bin's (texts shorter than
   10 tokens); our metrics average all 10 bins. Compared: our per-bin probabilities (the metric's
   stored curve) averaged over the bins ferret keeps; our metrics' own values are reported too.
2. ferret decodes every perturbed input to text and tokenises it again; a deleted word's "##" piece then
   joins the word before it, and "n't" / "can't" re-tokenise differently, so ferret may score other
   token ids than the deletion. Such explanations (per metric) are counted apart, not compared.
3. Ties in the scores: ferret's ``argsort`` puts the later token first, ours the earlier. Explanations
   whose top-k sets differ for that reason are counted apart (none expected: the scores are floats).
4. ferret's defaults we did not keep: ``only_pos=True`` (only positively scored tokens can be removed)
   and ``based_on: "perc"`` (⌊k·n/100⌋ tokens, a bin of 0 tokens skipped) instead of ⌊k·n/100 + ½⌋, at
   least 1.
5. p(ŷ|x) and every perturbed probability are computed by each tool in its own batches (ferret: 8
   texts padded to the longest; us: passes of one length, by a token budget, the kernels the service
   chose by timing them), with the same
   torch build but different transformers (ferret pins < 5): float32 rounding only. ferret runs the
   unperturbed input again in each evaluator; ours comes with the explanation (computed once).
6. Same on both sides, stated for completeness: the explained class is the prediction (the file's
   ``target``, which ``precomputed`` checks against ours); ferret's scores are L1-normalised (rankings
   and τ unchanged); [CLS] and [SEP] are never removed; SST-2 sentences are far below either tool's
   truncation (ferret: the tokenizer's 512; ``hf``: 256).

Agreement asserted: comprehensiveness and sufficiency within ``TOLERANCE`` (1e-5: each value is a mean
of differences of two probabilities each computed in another batch by other kernels, which README's
forward-pass section bounds at 1e-6 per probability; 1e-5 leaves room for transformers' versions),
leave-one-out τ within the same tolerance except where two leave-one-out drops are within
``TIE_GAP`` of each other (float rounding can order them differently in the two tools: counted apart).
Also asserted: our rows computed equal the distinct rows needed, in every round, and ferret's values are
the same in every round.

Run: ``make benchmark``, or ``python -m pytest benchmarks/test_ferret_side_by_side.py --benchmark-only
-s`` (``BENCH_FERRET_N=5 BENCH_FERRET_ROUNDS=1`` for a quick check). The first run creates ferret's venv
and the model (see ``ferret_side.py``); both are reused afterwards.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import torch
from ferret_side import FERRET_VERSION, FerretDriver, FerretUnavailable, ferret_python, user_model
from removal_rows import distinct_rows
from sst2_setup import SST2, explain_test_split, sst2_dataset

from harness import Attribution, MetricInput
from harness.forward import forward_service
from harness.perturb import evaluate, evaluate_together
from plugins.explainers.gradient import IntegratedGradients, Saliency
from plugins.explainers.lime import Lime
from plugins.explainers.precomputed import Precomputed
from plugins.explainers.shap import PartitionShap
from plugins.metrics.eraser import Comprehensiveness, Sufficiency
from plugins.metrics.faithfulness import LooCorrelation
from plugins.models.hf import HuggingFaceModel

N_EXAMPLES = int(os.environ.get("BENCH_FERRET_N", "50"))
ROUNDS = int(os.environ.get("BENCH_FERRET_ROUNDS", "3"))
THREADS = int(os.environ.get("BENCH_FERRET_THREADS", "0"))  # torch threads of both tools (0: torch's default)
E2E_N = int(os.environ.get("BENCH_FERRET_E2E_N", "20"))  # sentences the end-to-end arm explains
E2E_ROUNDS = int(os.environ.get("BENCH_FERRET_E2E_ROUNDS", "1"))
BINS = tuple(range(10, 101, 10))
BATCH_SIZE = 16  # a suite's default batch_size
TOLERANCE = 1e-5
TIE_GAP = 1e-5
METRICS = ("comprehensiveness", "sufficiency", "loo-correlation")


def metrics():
    return [
        Comprehensiveness(Comprehensiveness.Params(bins=BINS, masking="delete")),
        Sufficiency(Sufficiency.Params(bins=BINS, masking="delete")),
        LooCorrelation(),
    ]


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    if not (SST2 / "dev.jsonl").is_file() or not (SST2 / "train.jsonl").is_file():
        pytest.skip(f"ferret side by side: no SST-2 at {SST2}")
    try:
        python = ferret_python()
    except FerretUnavailable as error:
        pytest.skip(f"ferret-xai {FERRET_VERSION} cannot be installed here: {error}")
    model_folder = user_model(SST2)
    folder = tmp_path_factory.mktemp("ferret")
    jsonl = folder / "ferret.jsonl"
    threads = torch.get_num_threads()
    driver = FerretDriver(
        python, model_folder, SST2 / "dev.jsonl", N_EXAMPLES, jsonl, folder / "driver.log", threads=THREADS
    )
    try:
        if THREADS:
            torch.set_num_threads(THREADS)
        explained = driver.ask()
        dataset = sst2_dataset(N_EXAMPLES)
        model = HuggingFaceModel(HuggingFaceModel.Params(path=str(model_folder)))
        classifier = model.build(dataset, seed=0, device=torch.device("cpu"))
        names = list(dict.fromkeys(check["explainer"] for check in explained["checks"]))
        explanations = {name: precomputed(classifier, dataset, jsonl, name) for name in names}
        venv = (python.parents[1] / "installed.txt").read_text().splitlines()[0]  # how it was made
        yield driver, explained, classifier, dataset, explanations, model_folder, venv
    finally:
        driver.close()
        torch.set_num_threads(threads)


def precomputed(classifier, dataset, path, name: str) -> list[Attribution]:
    """One ferret explainer's explanations of the test split, read by ``precomputed`` as a run reads
    them (batches, the model's predicted class)."""
    explainer = Precomputed(Precomputed.Params(path=str(path), explainer=name))
    explainer.fit(classifier, dataset)
    return explain_test_split(classifier, dataset, explainer, BATCH_SIZE)


def our_round(classifier, dataset, explanations) -> tuple[dict, float, int]:
    """Our three metrics on every explanation, on the runner's path (perturb, then score), timed; the
    service's memo emptied first. Returns the outputs by (explainer, metric), seconds, rows computed."""
    service = forward_service(classifier)
    service.clear()
    before = service.stats.computed
    outputs = {}
    started = time.perf_counter()
    for name, attributions in explanations.items():
        data = MetricInput(
            attributions, {}, dataset, load_classifier=lambda: classifier, batch_size=BATCH_SIZE
        )
        evaluate_together(
            classifier, [metric.perturbations(data) for metric in metrics()], batch_size=BATCH_SIZE
        )
        for metric in metrics():
            outputs[(name, metric.name)] = metric.compute(data)
    return outputs, time.perf_counter() - started, service.stats.computed - before


def test_ferret_and_us_agree_on_the_same_explanations_taking_turns(benchmark, sides):
    driver, explained, classifier, dataset, explanations, model_folder, venv = sides
    checks = {(c["id"], c["explainer"]): c for c in explained["checks"]}
    first_id = dataset.test[0].id
    driver.ask("warm-up")
    our_round(
        classifier,
        dataset,
        {n: [a for a in atts if a.example_id == first_id] for n, atts in explanations.items()},
    )
    ferret_rounds, our_rounds = [], []
    benchmark.pedantic(
        lambda: our_rounds.append(our_round(classifier, dataset, explanations)),
        setup=lambda: ferret_rounds.append(driver.ask("evaluate")),  # ferret's turn, before each of ours
        rounds=ROUNDS,
        iterations=1,
    )
    assert len(ferret_rounds) == len(our_rounds) >= 1

    # -- rows ------------------------------------------------------------------------------------------
    distinct = distinct_rows(explanations, BINS)
    ferret_rows = sum(sum(c["ferret_rows"].values()) for c in checks.values())
    for _, _, computed in our_rounds:
        assert computed == distinct

    # -- values ----------------------------------------------------------------------------------------
    reference = {(v["id"], v["explainer"]): v for v in ferret_rounds[0]["values"]}
    for later in ferret_rounds[1:]:
        for v in later["values"]:
            same = reference[(v["id"], v["explainer"])]
            assert all(np.allclose(v[m], same[m], equal_nan=True, rtol=0, atol=0) for m in METRICS)
    agreement = compare(our_rounds[-1][0], explanations, reference, checks, classifier)
    for metric in METRICS:
        assert agreement[metric]["compared"] > 0, (metric, agreement[metric])  # something was compared
        assert agreement[metric]["max_abs_difference"] <= TOLERANCE, (metric, agreement[metric])

    # -- report ----------------------------------------------------------------------------------------
    rounds = []
    for index, (ferret, (_, seconds, computed)) in enumerate(zip(ferret_rounds, our_rounds, strict=True)):
        rounds.append(
            {
                "round": index + 1,
                "ferret_seconds_per_example": ferret["seconds"] / N_EXAMPLES,
                "our_seconds_per_example": seconds / N_EXAMPLES,
                "ferret_over_us": ferret["seconds"] / seconds,
                "our_rows": computed,
                "distinct_rows": distinct,
                "ferret_rows": ferret_rows,
                "ferret_seconds_per_row": ferret["seconds"] / ferret_rows,
                "our_seconds_per_row": seconds / computed,
            }
        )
    ratios = [r["ferret_over_us"] for r in rounds]
    benchmark.extra_info.update(
        n_examples=N_EXAMPLES,
        explainers=list(explanations),
        rounds=rounds,
        ferret_over_us_median=float(np.median(ratios)),
        agreement=agreement,
        tolerance=TOLERANCE,
        ferret_versions=explained["versions"],
        threads={"ferret": explained["threads"], "us": torch.get_num_threads()},
        ferret_explain_seconds_per_example={
            k: v / N_EXAMPLES for k, v in explained["explain_seconds"].items()
        },
        ferret_venv=venv,
        model=str(model_folder),
        model_dev_accuracy=_dev_accuracy(model_folder),
    )
    print(table(rounds, agreement, explained))


# -- end to end: each tool's own explainers ------------------------------------------------------------
FERRET_LIME_MAX_SAMPLES = 5000  # ferret's LIMEExplainer.MAX_SAMPLES


def our_explainers(n_tokens: int) -> dict:
    """Ours for each of ferret's six default explainers, at its sample counts: Partition SHAP at shap's
    default budget (500 evaluations), LIME with ferret's min(L², 5,000) samples for a text of L tokens
    (specials counted, as ferret counts them) and the mask token for a removed one, integrated gradients
    with captum's default 50 steps, the plain gradient and gradient × input. What differs and costs the
    same: our gradient's token score is the L2 norm (ferret's: the sum of |g|), one backward pass each."""
    return {
        "Partition SHAP": PartitionShap(PartitionShap.Params(max_evals=500)),
        "LIME": Lime(Lime.Params(samples=min(n_tokens**2, FERRET_LIME_MAX_SAMPLES), masking="mask")),
        "Gradient": Saliency(Saliency.Params(reduction="l2")),
        "Gradient (x Input)": Saliency(Saliency.Params(reduction="input_x_gradient")),
        "Integrated Gradient": IntegratedGradients(IntegratedGradients.Params(n_steps=50, reduction="sum")),
        "Integrated Gradient (x Input)": IntegratedGradients(
            IntegratedGradients.Params(n_steps=50, reduction="sum")
        ),
    }


def our_explain_round(classifier, dataset, n: int, warm: bool = False) -> dict[str, float]:
    """Seconds each of our explainers takes on the first ``n`` test sentences, one sentence per call (ferret
    explains one text per call; LIME's sample count depends on the text's length), the target the model's
    prediction; the service's memo emptied first. ``warm``: one sentence, untimed use."""
    forward_service(classifier).clear()
    seconds: dict[str, float] = {}
    for example in list(dataset.test)[: 1 if warm else n]:
        encoding = classifier.encode([example])
        encoding.example_ids = [example.id]
        targets = classifier.log_probabilities(encoding).argmax(-1)
        for name, explainer in our_explainers(len(encoding.tokens[0])).items():
            explainer.fit(classifier, dataset)
            started = time.perf_counter()
            explainer.explain(classifier, encoding, targets.clone())
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
    return seconds


def test_ferret_and_us_end_to_end_each_with_its_own_explainers_taking_turns(benchmark, sides):
    """ferret's six default explainers and ours at the same sample counts (``our_explainers``) on the first
    ``E2E_N`` sentences, ``E2E_ROUNDS`` turns each (ferret's first), seconds per sentence per explainer.
    Explaining only: the metrics are the other test's."""
    driver, _, classifier, dataset, _, _, _ = sides
    n = min(E2E_N, N_EXAMPLES)
    our_explain_round(classifier, dataset, n, warm=True)
    ferret_rounds, our_rounds = [], []
    benchmark.pedantic(
        lambda: our_rounds.append(our_explain_round(classifier, dataset, n)),
        setup=lambda: ferret_rounds.append(driver.ask(f"explain {n}")["explain_seconds"]),
        rounds=E2E_ROUNDS,
        iterations=1,
    )
    rows = []
    for name in our_explainers(2):  # the names (2 tokens: any length does)
        theirs = [r[name] / n for r in ferret_rounds]
        ours = [r[name] / n for r in our_rounds]
        rows.append(
            {
                "explainer": name,
                "ferret_seconds_per_example": theirs,
                "our_seconds_per_example": ours,
                "ferret_over_us": [t / o for t, o in zip(theirs, ours, strict=True)],
            }
        )
    totals = [sum(f.values()) / sum(o.values()) for f, o in zip(ferret_rounds, our_rounds, strict=True)]
    benchmark.extra_info.update(n_examples=n, explainers=rows, ferret_over_us_all_six=totals)
    lines = [
        f"\nend to end: ferret's six explainers and ours at equal sample counts, {n} SST-2 dev sentences, "
        f"{len(totals)} turns each",
        "| explainer | ferret s/example | our s/example | ferret / us |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['explainer']} | {_span(row['ferret_seconds_per_example'], 3)} | "
            f"{_span(row['our_seconds_per_example'], 3)} | {_span(row['ferret_over_us'], 1)} |"
        )
    lines.append(f"| all six | | | {_span(totals, 2)} |")
    print("\n".join(lines))


def _span(values, digits: int) -> str:
    low, high = min(values), max(values)
    return (
        f"{low:.{digits}f}"
        if f"{low:.{digits}f}" == f"{high:.{digits}f}"
        else f"{low:.{digits}f}–{high:.{digits}f}"
    )


def compare(outputs, explanations, reference, checks, classifier) -> dict:
    """Per metric: explanations compared, counted apart (decode → re-tokenise changes ferret's ids; top-k
    sets differ by ties; leave-one-out drops within TIE_GAP), and the largest |ours − ferret's| over those
    compared; beside it, the largest over the re-tokenised ones (what ferret's decoding changes) and the
    means over all explanations of ferret's values, of ours aggregated as ferret does and of our metric's
    own values (every bin counted)."""
    result = {}
    for metric in METRICS:
        differences, retokenised = [], []
        apart = {"retokenised": 0, "tie_order": 0, "near_tied_drops": 0}
        theirs_all, ours_all, ours_own = [], [], []
        for name, attributions in explanations.items():
            output = outputs[(name, metric)]
            values = np.asarray(getattr(output, "values", output), dtype=np.float64)
            drops = loo_drops(attributions, classifier) if metric == "loo-correlation" else None
            for index, a in enumerate(attributions):
                check, theirs = checks[(a.example_id, name)], reference[(a.example_id, name)][metric]
                if metric == "loo-correlation":
                    ours = float(values[index])
                else:
                    curve = output.curves[index]["y"]  # p(ŷ|x), then p(ŷ|x perturbed) per bin
                    kept = zip(curve[1:], check["kept_bins"], strict=True)
                    ours = float(np.mean([curve[0] - p for p, keep in kept if keep]))
                theirs_all.append(theirs)
                ours_all.append(ours)
                ours_own.append(float(values[index]))
                difference = 0.0 if _same(ours, theirs) else abs(ours - theirs)
                if not check["round_trip"][metric]:
                    apart["retokenised"] += 1
                    retokenised.append(difference)
                elif metric != "loo-correlation" and not check["same_top_sets"]:
                    apart["tie_order"] += 1
                elif (
                    metric == "loo-correlation"
                    and difference > 0
                    and len(drops[index]) > 1
                    and np.diff(np.sort(drops[index])).min() < TIE_GAP
                ):
                    apart["near_tied_drops"] += 1
                else:
                    differences.append(difference)
        result[metric] = {
            "compared": len(differences),
            "apart": apart,
            "max_abs_difference": max(differences, default=0.0),
            "retokenised_max_abs_difference": max(retokenised, default=0.0),
            "mean_ferret": float(np.nanmean(theirs_all)),
            "mean_ours_as_ferret_aggregates": float(np.nanmean(ours_all)),
            "mean_ours_own": float(np.nanmean(ours_own)),
        }
    return result


def _same(ours: float, theirs: float) -> bool:
    return (math.isnan(ours) and math.isnan(theirs)) or ours == theirs


def loo_drops(attributions, classifier) -> list[np.ndarray]:
    """Our leave-one-out drops p(ŷ|x) − p(ŷ|x without token i), per attribution (untimed; the service's
    memo holds them after a round)."""
    metric = LooCorrelation()
    data = MetricInput(attributions, {}, None, load_classifier=lambda: classifier, batch_size=BATCH_SIZE)
    matrices = evaluate(
        classifier, attributions, metric.removals(data), masking="delete", batch_size=BATCH_SIZE
    )
    return [
        np.exp(m[0, a.target]) - np.exp(m[1:, a.target]) for m, a in zip(matrices, attributions, strict=True)
    ]


def _dev_accuracy(model_folder) -> float:
    import json

    return json.loads((model_folder / "built.json").read_text())["dev_accuracy"]


def table(rounds, agreement, explained) -> str:
    lines = [
        f"\nferret {explained['versions']['ferret-xai']} vs us: {N_EXAMPLES} SST-2 dev sentences × "
        f"{len({c['explainer'] for c in explained['checks']})} ferret explainers × comprehensiveness, "
        "sufficiency (10 bins), loo-correlation",
        "| round | ferret s/example | our s/example | ferret / us | our rows | distinct rows | ferret rows "
        "| ferret s/row | our s/row |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['round']} | {r['ferret_seconds_per_example']:.4f} | {r['our_seconds_per_example']:.4f} | "
            f"{r['ferret_over_us']:.2f} | {r['our_rows']} | {r['distinct_rows']} | {r['ferret_rows']} | "
            f"{r['ferret_seconds_per_row'] * 1e3:.3f} ms | {r['our_seconds_per_row'] * 1e3:.3f} ms |"
        )
    for metric, a in agreement.items():
        lines.append(
            f"{metric}: {a['compared']} explanations compared, max |ours − ferret's| "
            f"{a['max_abs_difference']:.2e}; apart: {a['apart']} (re-tokenised: max difference "
            f"{a['retokenised_max_abs_difference']:.3f}); means: ferret {a['mean_ferret']:.4f}, ours as ferret "
            f"aggregates {a['mean_ours_as_ferret_aggregates']:.4f}, ours {a['mean_ours_own']:.4f}"
        )
    return "\n".join(lines)
