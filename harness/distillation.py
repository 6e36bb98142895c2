"""Teacher vs student: each distilled explainer (a student, see ``harness.TeacherSpec``) compared with
the explainer it learned from, on every metric both were evaluated with (L2E, Situ et al. 2021).

A pairing is one (dataset, model, variant, metric) column and one student whose teacher is also a row
of the run: a two-sided Wilcoxon signed-rank test of the paired per-example differences student −
teacher (paired by seed and example), Holm-Bonferroni corrected over every pairing of the run, as the
paper corrects "for all pairs of comparisons in a table".

A student is compared with its teacher in the order it learned, as the paper does: a ranking student
(the order of |teacher weight|) on the top words by |score| only (§4.5, App. D Table 9), a
sequence-labelling student on its positive and negative words (Tables 1, 2, 8). Both sides declare it:
the student's explainer ``score_order_for(params)`` ("signed" or "absolute": L2E's formulation), and a
metric's ``score_order_for(params)`` the order it takes an explanation's units in (``delta-log-odds``'
``select``, the agreement metrics' ``order``). A column whose metric declares another order than the
student's is not paired; a plugin declaring none (runtime, speed-up) is paired on every column.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import NamedTuple

from harness.errors import BenchError
from harness.registry import get_registry
from harness.rows import labels_by_id, samples_by
from harness.stats import Comparison, holm, paired_wilcoxon

TEST = "Wilcoxon signed-rank, two-sided, student vs teacher, paired by unit (example, or timed batch)"


@dataclass(frozen=True)
class Pairing:
    dataset: str
    model: str
    variant: str
    metric: str
    direction: str
    teacher: str
    student: str
    mean_teacher: float | None
    mean_student: float | None
    comparison: Comparison

    @property
    def outcome(self) -> str:
        if self.comparison.p_value is None:
            return "untestable (no paired examples)"
        if not self.comparison.significant or self.mean_teacher is None or self.mean_student is None:
            return "no significant difference"
        student_higher = self.mean_student > self.mean_teacher
        student_better = student_higher == (self.direction == "higher")
        return "student better" if student_better else "teacher better"

    def as_dict(self) -> dict:
        data = asdict(self)
        data["comparison"] = self.comparison.as_dict()
        data["outcome"] = self.outcome
        return data


class Teacher(NamedTuple):
    """A student's teacher, and the score order the student is compared with it in."""

    id: str  # the teacher's identity hash (its cells' explainer_id)
    name: str  # the teacher's plugin name, shown when the run has no row of the teacher
    score_order: str | None = None  # the student's declared order ("signed", "absolute"); None: any


def teacher_ids(fits: Iterable[dict]) -> dict[str, Teacher]:
    """Student identity → its teacher (``Store.fits`` rows of students), with the order the student
    declares (its explainer's ``score_order_for`` with the stored parameters)."""
    return {
        fit["explainer_id"]: Teacher(
            fit["teacher_id"],
            json.loads(fit["teacher"])["name"],
            declared_order("explainer", fit.get("explainer"), fit.get("explainer_params")),
        )
        for fit in fits
        if fit.get("teacher_id") and fit.get("explainer_id")
    }


def declared_order(kind: str, name: str | None, params: str | dict | None) -> str | None:
    """The score order a plugin declares with these parameters (its ``score_order_for(params)``), or
    None: it declares none, is not installed here, its parameters are not given (rows of a store
    written before report rows carried them) or no longer validate."""
    if not name or params is None:
        return None
    try:
        cls = get_registry().get(kind, name).cls
    except BenchError:
        return None
    declare = getattr(cls, "score_order_for", None)
    if declare is None:
        return None
    try:
        parsed = cls.Params.model_validate(json.loads(params) if isinstance(params, str) else params)
    except ValueError:  # pydantic's ValidationError and json's errors are ValueErrors
        return None
    return declare(parsed)


def pair_students(records: Iterable[dict], teachers: dict[str, Teacher | tuple]) -> list[Pairing]:
    """Pairings over report rows (``Store.report_rows``), ``teachers`` from ``teacher_ids``.

    A student's column is paired with its teacher's row of the same column when the run evaluated the
    teacher there, and when the column's metric takes units in the order the student learned (or
    either declares none; see the module's docstring). A metric that compares the student with its
    teacher under one protocol (the teacher's value depends on the student, e.g. Δlog-odds with the
    number of masked words matched) stores the teacher's value with each record
    (``reference_value``): that column is paired within the student's cell."""
    records = list(records)
    samples = samples_by(records, _student_key)
    references = samples_by(
        [r for r in records if r.get("reference_value") is not None], _student_key, "reference_value"
    )
    directions = {record["metric_id"]: record["direction"] for record in records}
    metric_orders: dict[str, str | None] = {}
    for record in records:
        if record["metric_id"] not in metric_orders:
            metric_orders[record["metric_id"]] = declared_order(
                "metric", record.get("metric"), record.get("metric_params")
            )
    labels = labels_by_id(records)
    pairings = []
    for cell, student_sample in samples.items():
        dataset, model, variant, metric, student = cell
        if student not in teachers:
            continue
        teacher, teacher_name, order = Teacher(*teachers[student])
        if order is not None and metric_orders[metric] not in (None, order):
            continue  # the column selects units in another order than the student learned
        if cell in references and references[cell].n:
            teacher_sample = references[cell]  # the same cell's reference values
        elif (dataset, model, variant, metric, teacher) in samples:
            teacher_sample = samples[(dataset, model, variant, metric, teacher)]
        else:
            continue
        pairings.append(
            Pairing(
                labels[dataset], labels[model], variant, labels[metric], directions[metric],
                labels.get(teacher, teacher_name), labels[student],
                teacher_sample.mean, student_sample.mean,
                paired_wilcoxon(student_sample, teacher_sample),
            )
        )  # fmt: skip
    corrected = holm([pairing.comparison for pairing in pairings])
    return [
        Pairing(**{**pairing.__dict__, "comparison": comparison})
        for pairing, comparison in zip(pairings, corrected, strict=True)
    ]


def _student_key(row: dict) -> tuple[str, str, str, str, str]:
    return (row["dataset_id"], row["model_id"], row["variant"], row["metric_id"], row["explainer_id"])
