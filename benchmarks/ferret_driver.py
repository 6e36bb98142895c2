"""ferret's side of ``test_ferret_side_by_side.py``, run by the Python of ferret's own virtual environment
(``ferret_side.FerretDriver`` starts it); it imports ferret, never the harness.

Started with the user's model folder and the SST-2 dev file, it first explains the first ``--n`` sentences
with ferret's six default explainers (``ferret.Benchmark``'s: Partition SHAP, LIME, Gradient, Gradient
(x Input), Integrated Gradient, Integrated Gradient (x Input)) for the model's predicted class, L1-normalised
as ``Benchmark.explain`` returns them, and writes them as the JSONL the ``precomputed`` explainer reads
(``id``, ``text``, ``explainer``, ``tokens``, ``offsets``, ``segments``, ``scores``, ``target``,
``seconds``). Then, for each ``evaluate`` line read on stdin, it times ferret's own evaluation of every
explanation (``Benchmark.evaluate_explanation`` with three evaluators: ``AOPC_Comprehensiveness_Evaluation``,
``AOPC_Sufficiency_Evaluation``, ``TauLOO_Evaluation``) and answers with each explanation's three values
and seconds. ``explain N`` explains the first N sentences again with the same seeds and answers with the
seconds each explainer took (the end-to-end arm: ferret's explainers timed in turn with ours).
``warm-up`` evaluates the first sentence's explanations untimed; ``quit`` ends it.

The evaluators are given the settings closest to our metrics' (``comprehensiveness`` and ``sufficiency``
with bins 10, 20 … 100 %, deletion; ``loo-correlation``): ``only_pos=False`` (ferret's default keeps only
positively scored tokens in a rationale; ours ranks all of them) and ``removal_args={"remove_tokens": True,
"based_on": "k", "thresholds": [our top-k counts]}``, i.e. per explanation the number of tokens our metric
removes at each bin (⌊k·n/100 + ½⌋, at least 1) instead of ferret's default ``perc`` (⌊k·n/100⌋ tokens,
a bin of 0 tokens skipped). What stays ferret's own: a bin whose token set equals the previous bin's is
left out of its mean, ties in the ranking go to the later token (``argsort``), and each perturbed input
is decoded to text and tokenised again. Alongside (untimed, once) this driver checks for each explanation
whether that decode → tokenise round trip gives back the perturbed token ids, whether ferret's top-k sets
are ours (ties), and counts the inputs ferret runs through the model; the reply carries all of it.

Answers are one JSON object per line on the file descriptor ``--reply-fd``; whatever ferret, tqdm or
transformers print goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from importlib.metadata import version

BINS = tuple(range(10, 101, 10))
METRICS = {"aopc_compr": "comprehensiveness", "aopc_suff": "sufficiency", "taucorr_loo": "loo-correlation"}
PACKAGES = ("ferret-xai", "torch", "transformers", "captum", "shap", "lime", "numpy", "scipy", "tokenizers")


def top_count(percent: float, n_units: int) -> int:
    """Our metrics' "top k %" of n units (harness.perturb.top_count, restated: this process has no
    harness): k·n/100 rounded half up, at least one, at most n."""
    return min(max(int(math.floor(percent * n_units / 100.0 + 0.5)), 1), n_units)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="SST-2 dev.jsonl")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", required=True, help="the explanations' JSONL file to write")
    parser.add_argument("--reply-fd", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    reply_file = os.fdopen(args.reply_fd, "w", buffering=1)
    sys.stdout = sys.stderr  # ferret's and tqdm's prints must not reach the replies
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # numpy 1.24 on ferret's `ids == []`

    def reply(message: dict) -> None:
        reply_file.write(json.dumps(message) + "\n")
        reply_file.flush()

    try:
        run(args, reply)
    except Exception as error:  # noqa: BLE001 - the parent reports it, in one line
        reply({"event": "error", "error": f"{type(error).__name__}: {error}"})
        raise


def run(args, reply) -> None:
    import numpy as np
    import torch
    from ferret import (
        AOPC_Comprehensiveness_Evaluation,
        AOPC_Sufficiency_Evaluation,
        Benchmark,
        TauLOO_Evaluation,
    )
    from ferret.benchmark import lp_normalize
    from ferret.evaluators.utils_from_soft_to_discrete import _get_id_tokens_top_k
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    evaluators = [
        AOPC_Comprehensiveness_Evaluation(model, tokenizer),
        AOPC_Sufficiency_Evaluation(model, tokenizer),
        TauLOO_Evaluation(model, tokenizer),
    ]
    bench = Benchmark(model, tokenizer, evaluators=evaluators)
    with open(args.data, encoding="utf-8") as data:
        rows = [json.loads(line) for line in data if line.strip()][: args.n]

    # -- explanations (ferret's explainers, as Benchmark.explain runs them, each timed) --------------------
    def explain(row: dict, index: int) -> tuple[int, list, list[float]]:
        """Every explainer's explanation of one sentence (numpy's generator seeded by its position, for
        LIME), each timed, L1-normalised afterwards as ``Benchmark.explain`` does."""
        target = int(bench.score(row["text"], return_dict=False).argmax(-1))
        np.random.seed(index)  # LIME samples from numpy's global generator; SHAP seeds itself (42)
        explanations, seconds = [], []
        for explainer in bench.explainers:
            started = time.perf_counter()
            explanations.append(explainer(row["text"], target))
            seconds.append(time.perf_counter() - started)
        return target, lp_normalize(explanations, 1), seconds

    explained, explain_seconds = [], {}
    with open(args.out, "w", encoding="utf-8") as out:
        for index, row in enumerate(rows):
            text = row["text"]
            target, explanations, seconds = explain(row, index)
            encoded = tokenizer(text, truncation=True, return_offsets_mapping=True)
            segments = [-1 if s is None else s for s in encoded.sequence_ids()]
            for explanation, spent in zip(explanations, seconds, strict=True):
                if list(explanation.tokens) != tokenizer.convert_ids_to_tokens(encoded["input_ids"]):
                    raise RuntimeError(f"{row['id']}: ferret's tokens are not the tokenizer's")
                record = {
                    "id": row["id"],
                    "text": text,
                    "explainer": explanation.explainer,
                    "tokens": list(explanation.tokens),
                    "offsets": [list(pair) for pair in encoded["offset_mapping"]],
                    "segments": segments,
                    "scores": [float(s) for s in explanation.scores],
                    "target": target,
                    "seconds": spent,
                }
                out.write(json.dumps(record) + "\n")
                explain_seconds[explanation.explainer] = (
                    explain_seconds.get(explanation.explainer, 0.0) + spent
                )
                explained.append((record, explanation, encoded["input_ids"]))
            print(f"explained {row['id']} ({sum(seconds):.1f} s)", file=sys.stderr, flush=True)
    checks = [check(record, ids, tokenizer, _get_id_tokens_top_k) for record, _, ids in explained]
    reply(
        {
            "event": "explained",
            "path": args.out,
            "explanations": len(explained),
            "explain_seconds": explain_seconds,
            "checks": checks,
            "versions": {name: version(name) for name in PACKAGES},
            "threads": torch.get_num_threads(),
        }
    )

    # -- evaluation rounds ---------------------------------------------------------------------------------
    def evaluate(items) -> tuple[list[dict], float]:
        values, total = [], 0.0
        for (record, explanation, _), item_check in items:
            evaluation_args = {
                "remove_first_last": True,
                "only_pos": False,
                "removal_args": {"remove_tokens": True, "based_on": "k", "thresholds": item_check["counts"]},
            }
            started = time.perf_counter()
            evaluation = bench.evaluate_explanation(
                explanation, record["target"], show_progress=False, **evaluation_args
            )
            spent = time.perf_counter() - started
            total += spent
            scores = {METRICS[e.name]: float(e.score) for e in evaluation.evaluation_scores}
            values.append({"id": record["id"], "explainer": record["explainer"], **scores, "seconds": spent})
        return values, total

    items = list(zip(explained, checks, strict=True))
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "warm-up":
            first = [item for item in items if item[0][0]["id"] == items[0][0][0]["id"]]
            evaluate(first)
            reply({"event": "warmed-up"})
        elif command.startswith("explain "):  # explain the first n sentences again, timing only
            n, again = int(command.split()[1]), {}
            for index, row in enumerate(rows[:n]):
                _, explanations, seconds = explain(row, index)
                for explanation, spent in zip(explanations, seconds, strict=True):
                    again[explanation.explainer] = again.get(explanation.explainer, 0.0) + spent
            reply({"event": "explained-again", "n": n, "explain_seconds": again})
        elif command == "evaluate":
            started = time.perf_counter()
            values, seconds = evaluate(items)
            reply({"event": "evaluated", "values": values, "seconds": seconds,
                   "wall_seconds": time.perf_counter() - started})  # fmt: skip
        else:
            reply({"event": "error", "error": f"unknown command {command!r}"})


def check(record: dict, input_ids: list[int], tokenizer, top_k) -> dict:
    """What ferret's evaluators will do with this explanation, found without timing them: per bin the
    token count (ours), whether ferret keeps the bin (its set differs from the previous bin's), whether
    ferret's top-k set is ours (descending score, ties in text order), whether every perturbed input
    survives decode → tokenise with the same ids (per metric), and the rows ferret runs (per metric: the
    unperturbed input, then one per kept bin or per left-out token)."""
    import numpy as np

    ids = list(input_ids[1:-1])  # ferret's remove_first_last: [CLS] and [SEP] go
    scores = np.asarray(record["scores"][1:-1], dtype=np.float64)
    n = len(ids)
    counts = [top_count(k, n) for k in BINS]
    ours = sorted(range(n), key=lambda i: (-scores[i], i))
    kept, same_sets, previous = [], True, None
    comprehensiveness_ids, sufficiency_ids = [], []
    for count in counts:
        top = [int(i) for i in top_k(scores, count, only_pos=False)]
        kept.append(previous is None or set(top) != previous)
        previous = set(top)
        same_sets &= set(top) == set(ours[:count])
        if kept[-1]:
            comprehensiveness_ids.append([t for i, t in enumerate(ids) if i not in previous])
            sufficiency_ids.append([ids[i] for i in sorted(top)])
    loo_ids = [ids[:i] + ids[i + 1 :] for i in range(n)]

    def round_trip(sequences: list[list[int]]) -> bool:
        wrapped = [[tokenizer.cls_token_id, *s, tokenizer.sep_token_id] for s in sequences]
        again = [tokenizer(tokenizer.decode(s), truncation=True)["input_ids"] for s in sequences]
        return again == wrapped

    return {
        "id": record["id"],
        "explainer": record["explainer"],
        "n_tokens": n,
        "counts": counts,
        "kept_bins": kept,
        "same_top_sets": bool(same_sets),
        "round_trip": {
            "comprehensiveness": round_trip(comprehensiveness_ids),
            "sufficiency": round_trip(sufficiency_ids),
            "loo-correlation": round_trip(loo_ids),
        },
        "ferret_rows": {
            "comprehensiveness": 1 + sum(kept),
            "sufficiency": 1 + sum(kept),
            "loo-correlation": 1 + n,
        },
    }


if __name__ == "__main__":
    main()
