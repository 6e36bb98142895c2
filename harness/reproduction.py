"""Claims → the reproduction table: each finding of a paper (``Suite.claims``) beside what a stored run
measured in the cells it corresponds to, with a verdict.

A claim with two sides (``above`` / ``below`` on one axis) is judged once per group of cells that differ
only on that axis, as an expected order is (``harness.expectations``): on the paired per-example
differences above − below (paired by seed and example, averaged within a unit), whose mean and 95 %
cluster-bootstrap interval the table shows beside each side's. A one-sided claim (``near``) is judged
once per matching cell, on its mean and interval. ``metric: test-accuracy`` reads the trained models'
accuracy on their whole test split instead of a metric's cells, one value per seed.

Verdicts:

- ``direction``: reproduced when the mean difference is positive;
- ``significant``: reproduced when it is positive and the one-sided Wilcoxon signed-rank test, Holm-
  corrected over every ``significant`` row of the run, gives p < α;
- ``within`` / ``beyond`` / ``near``: judged on the interval, not the point alone (an equivalence-style
  reading: our samples are smaller than the papers'): reproduced when the whole interval satisfies the
  margin, not reproduced when none of it does, inconclusive when it straddles the margin's edge;
- not testable here: the claim says why (``untestable``), or no cell of the run matches it, or its
  cells have no paired finite values.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as _replace

from harness.distillation import Teacher
from harness.rows import samples_by
from harness.stats import ALPHA, Comparison, Sample, Summary, holm, paired_wilcoxon, summarize
from harness.suite import TEST_ACCURACY, Claim, claim_params_match

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, UNTESTABLE = (
    "reproduced",
    "not reproduced",
    "inconclusive",
    "not testable here",
)
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, UNTESTABLE)


@dataclass(frozen=True)
class ClaimResult:
    """One row of the reproduction table: a claim judged on one group of cells (or not testable)."""

    claim: Claim
    dataset: str = ""  # labels of the cells' fixed parts ("" where the claim compares that axis)
    model: str = ""
    variant: str = ""
    explainer: str = ""
    metric: str = ""
    above: str = ""  # the compared values' labels (two-sided claims)
    below: str = ""
    ours: Summary | None = None  # one-sided: the cell; two-sided: the above side
    ours_below: Summary | None = None
    difference: Summary | None = None  # paired above − below
    comparison: Comparison | None = None  # significant: the one-sided test, Holm-corrected
    verdict: str = UNTESTABLE
    reason: str = ""  # why not testable, or what decided the verdict

    @property
    def cells(self) -> str:
        """The cells the row reads, in words."""
        parts = [self.dataset, self.model]
        if self.variant and self.variant != "default":
            parts.append(self.variant)
        parts += [self.explainer, self.metric]
        return " · ".join(part for part in parts if part)

    def as_dict(self) -> dict:
        def summary(value: Summary | None) -> dict | None:
            return None if value is None else value.as_dict()

        return {
            "paper": self.claim.paper,
            "source": self.claim.source,
            "claim": self.claim.claim,
            "paper_value": self.claim.paper_value,
            "reproduced_if": self.claim.reproduced_if,
            "margin": self.claim.margin,
            "criterion": self.claim.criterion,
            "dataset": self.dataset,
            "model": self.model,
            "variant": self.variant,
            "explainer": self.explainer,
            "metric": self.metric,
            "above": self.above,
            "below": self.below,
            "ours": summary(self.ours),
            "ours_below": summary(self.ours_below),
            "difference": summary(self.difference),
            "comparison": None if self.comparison is None else self.comparison.as_dict(),
            "verdict": self.verdict,
            "reason": self.reason,
        }


def judge_claims(
    claims: Sequence[Claim],
    records: Iterable[dict],
    models: Iterable[dict] = (),
    teachers: Mapping[str, Teacher] | None = None,
) -> list[ClaimResult]:
    """The reproduction table's rows for ``claims`` over report rows (``Store.report_rows``), the
    run's trained models (``Store.models``: claims on ``test-accuracy``) and its students' teachers
    (``distillation.teacher_ids``: a student's cell of a metric storing the teacher's value beside its
    own, ``reference_value``, answers a claim comparing it with that teacher), in the claims' order."""
    records = [*records, *accuracy_records(models)]
    cells = samples_by(records)
    references = samples_by([r for r in records if "reference_value" in r], field="reference_value")
    labels = {record["explainer_id"]: record["explainer_label"] for record in records}
    facts: dict[tuple, dict] = {}  # a cell's key -> the names, labels and parameters claims match
    for record in records:
        key = (
            record["dataset_id"],
            record["model_id"],
            record["variant"],
            record["explainer_id"],
            record["metric_id"],
        )
        if key not in facts:
            facts[key] = {
                "dataset": record["dataset"],
                "model": record["model"],
                "variant": record["variant"],
                "explainer": record["explainer_label"],
                "explainer_names": {record["explainer"], record["explainer_label"]},
                "metric": record["metric"],
                "metric_label": record["metric_label"],
                "metric_params": json.loads(record.get("metric_params") or "{}"),
                "teacher": None,  # (names, label) of the teacher whose values the cell stores beside its own
            }
        teacher = (teachers or {}).get(record["explainer_id"])
        if (
            teacher is not None
            and record.get("reference_value") is not None
            and facts[key]["teacher"] is None
        ):
            label = labels.get(teacher.id, teacher.name)
            facts[key]["teacher"] = ({teacher.name, label}, label)

    pending: list[tuple[Claim, list]] = []  # a claim and its rows (results, or tuples to judge)
    for claim in claims:
        if claim.untestable is not None:
            pending.append((claim, [ClaimResult(claim, reason=claim.untestable)]))
            continue
        matching = [key for key, fact in facts.items() if _matches(claim, fact)]
        if not matching:
            pending.append(
                (claim, [ClaimResult(claim, reason=f"no cell of this run matches ({_wanted(claim)})")])
            )
            continue
        if claim.axis is None:
            pending.append((claim, [_one_side(claim, facts[key], cells[key]) for key in matching]))
        else:
            pending.append((claim, _two_sided(claim, matching, facts, cells, references)))

    tested = [
        row for _, rows in pending for row in rows if isinstance(row, tuple) and row[0] == "significant"
    ]
    adjusted = iter(holm([row[1].comparison for row in tested], ALPHA))
    adjusted_by_row = {id(row): next(adjusted) for row in tested}
    results = []
    for _, rows in pending:
        for row in rows:
            if isinstance(row, tuple):
                result = row[1]
                row = _significance(result, adjusted_by_row[id(row)])
            results.append(row)
    return results


def accuracy_records(models: Iterable[dict]) -> list[dict]:
    """Each trained model's accuracy on its whole test split as a report row of the pseudo-metric
    ``test-accuracy`` (``TEST_ACCURACY``), one record per seed, each seed its own unit: a claim about
    accuracy is judged over the seeds (intervals resample seeds; one seed gives no interval), and two
    models are paired by seed."""
    result = []
    for model in models:
        if model.get("test_accuracy") is None:
            continue
        result.append(
            {
                "dataset_id": model["dataset_id"] or model["dataset"], "model_id": model["model_id"] or model["model"],
                "variant": model["variant"], "explainer_id": "", "metric_id": TEST_ACCURACY,
                "dataset": model["dataset"], "model": model["model"], "explainer": "", "explainer_label": "",
                "metric": TEST_ACCURACY, "metric_label": f"test accuracy (n={model['n_test']})", "metric_params": "{}",
                "seed": model["seed"], "example_id": "test split", "value": model["test_accuracy"],
                "unit": f"seed {model['seed']}",
            }
        )  # fmt: skip
    return result


def _matches(claim: Claim, fact: dict) -> bool:
    if fact["metric"] != claim.metric or not claim_params_match(claim.params, fact["metric_params"]):
        return False
    for axis, value in claim.where.items():
        if axis == "explainer":
            if value not in fact["explainer_names"]:
                return False
        elif fact[axis] != value:
            return False
    return True


def _wanted(claim: Claim) -> str:
    parts = [f"metric {claim.metric}"]
    parts += [f"{key} {value}" for key, value in claim.params.items()]
    parts += [f"{axis} {value}" for axis, value in claim.where.items()]
    if claim.axis is not None:
        parts.append(f"{claim.axis} {claim.above_value} and {claim.below_value}")
    return ", ".join(parts)


def _one_side(claim: Claim, fact: dict, sample: Sample) -> ClaimResult:
    summary = summarize(sample)
    base = ClaimResult(
        claim,
        fact["dataset"],
        fact["model"],
        fact["variant"],
        fact["explainer"],
        fact["metric_label"],
        ours=summary,
    )
    if summary.mean is None:
        return _replace(base, verdict=UNTESTABLE, reason="the cell has no finite value")
    paper = float(claim.paper_value)
    low, high = paper - claim.margin, paper + claim.margin
    return _interval_verdict(base, summary, low, high, f"within {claim.margin:g} of the paper's {paper:g}")


def _two_sided(
    claim: Claim, matching: list[tuple], facts: dict[tuple, dict], cells: dict, references: dict
) -> list:
    """One row per group of matching cells that differ only on the claim's axis, per (above, below)
    pair of that axis's values. A side with no cell of its own in the group may be a student's teacher
    whose values the student's cell stores beside its own (``reference_value``): that student is then
    compared with them."""
    position = {"variant": 2, "explainer": 3, "model": 1}[claim.axis]
    groups: dict[tuple, list[tuple]] = defaultdict(list)
    for key in matching:
        groups[key[:position] + ("",) + key[position + 1 :]].append(key)
    rows = []
    for keys in groups.values():
        above = [key for key in keys if _named(claim, claim.above_value, facts[key])]
        below = [key for key in keys if _named(claim, claim.below_value, facts[key])]
        if claim.above_value == "*":
            above = [key for key in keys if key not in below]
        if claim.below_value == "*":
            below = [key for key in keys if key not in above]
        for high in above:
            for low in below:
                if high != low:
                    rows.append(_pair(claim, facts[high], facts[low], cells[high], cells[low]))
        if claim.axis != "explainer":
            continue
        for student, other, student_above in [(k, claim.below_value, True) for k in above if not below] + [
            (k, claim.above_value, False) for k in below if not above
        ]:
            teacher = facts[student]["teacher"]
            if teacher is None or other not in teacher[0]:
                continue
            stored = {**facts[student], "explainer": teacher[1]}
            mine, theirs = cells[student], references[student]
            pair = (
                (facts[student], stored, mine, theirs)
                if student_above
                else (stored, facts[student], theirs, mine)
            )
            rows.append(_pair(claim, *pair))
    if not rows:
        return [ClaimResult(claim, reason=f"no group of cells holds both sides ({_wanted(claim)})")]
    return rows


def _named(claim: Claim, value: str, fact: dict) -> bool:
    if claim.axis == "explainer":
        return value in fact["explainer_names"]
    return fact[claim.axis] == value


def _pair(claim: Claim, high: dict, low: dict, a: Sample, b: Sample):
    fixed = {axis: high[axis] for axis in ("dataset", "model", "variant", "explainer")}
    fixed[claim.axis] = ""
    shown = "explainer" if claim.axis == "explainer" else claim.axis
    base = ClaimResult(
        claim, fixed["dataset"], fixed["model"], fixed["variant"], fixed["explainer"], high["metric_label"],
        above=high[shown], below=low[shown], ours=summarize(a), ours_below=summarize(b),
    )  # fmt: skip
    difference = paired_differences(a, b)
    base = _replace(base, difference=summarize(difference))
    if base.difference.mean is None:
        return _replace(base, verdict=UNTESTABLE, reason="no example has a finite value on both sides")
    mean = base.difference.mean
    criterion = claim.reproduced_if
    if criterion == "direction":
        verdict = REPRODUCED if mean > 0 else NOT_REPRODUCED
        return _replace(base, verdict=verdict, reason=f"mean difference {mean:+.3g}")
    if criterion == "significant":
        return ("significant", _replace(base, comparison=paired_wilcoxon(a, b, alternative="greater")))
    if criterion == "within":
        return _interval_verdict(
            base, base.difference, -claim.margin, claim.margin, f"|difference| <= {claim.margin:g}"
        )
    return _interval_verdict(
        base, base.difference, claim.margin, math.inf, f"difference > {claim.margin:g}", open_low=True
    )


def _significance(result: ClaimResult, comparison: Comparison) -> ClaimResult:
    if comparison.p_value is None:
        return _replace(result, comparison=comparison, verdict=UNTESTABLE, reason="no paired examples")
    holds = comparison.significant and result.difference.mean > 0
    p = f"p (Holm) {comparison.p_adjusted:.3g}"
    return _replace(result, comparison=comparison, verdict=REPRODUCED if holds else NOT_REPRODUCED, reason=p)


def _interval_verdict(
    base: ClaimResult, summary: Summary, low: float, high: float, wanted: str, open_low: bool = False
) -> ClaimResult:
    """Reproduced when the interval lies inside [low, high] (above ``low`` strictly when ``open_low``),
    not reproduced when it lies outside, inconclusive when it straddles an edge; with no interval (one
    unit), the point estimate decides and the reason says so."""

    def inside(value: float) -> bool:
        return (value > low if open_low else value >= low) and value <= high

    if summary.ci_low is None or summary.ci_high is None:
        verdict = REPRODUCED if inside(summary.mean) else NOT_REPRODUCED
        return _replace(base, verdict=verdict, reason=f"{wanted}; one unit, no interval: the mean decides")
    lo, hi = summary.ci_low, summary.ci_high
    if inside(lo) and inside(hi):
        verdict = REPRODUCED
    elif (hi <= low if open_low else hi < low) or lo > high:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return _replace(base, verdict=verdict, reason=f"{wanted}; interval [{lo:.3g}, {hi:.3g}]")


def paired_differences(a: Sample, b: Sample) -> Sample:
    """The per-record differences a − b where both are finite, each in its unit (a record whose unit
    differs between a and b belongs to the unit "ua|ub", as ``paired_wilcoxon`` pairs them)."""
    fa, fb = a.finite(), b.finite()
    values = {key: value - fb[key] for key, value in fa.items() if key in fb}
    units = {
        key: a.units[key] if a.units[key] == b.units[key] else f"{a.units[key]}|{b.units[key]}"
        for key in values
    }
    return Sample(values, units)


def tally(results: Sequence[ClaimResult]) -> dict[str, dict[str, int]]:
    """Per paper, how many rows got each verdict."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(VERDICTS, 0))
    for result in results:
        counts[result.claim.paper][result.verdict] += 1
    return dict(counts)
