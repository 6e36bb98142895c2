"""Teacher vs student: each distilled explainer (a student, see ``harness.TeacherSpec``) compared with
the explainer it learned from, on every metric both were evaluated with (L2E, Situ et al. 2021).

A pairing is one (dataset, model, variant, metric) column and one student whose teacher is also a row
of the run: a two-sided Wilcoxon signed-rank test of the paired per-example differences student −
teacher (paired by seed and example), Holm-Bonferroni corrected over every pairing of the run, as the
paper corrects "for all pairs of comparisons in a table".
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from harness.stats import Comparison, holm, paired_wilcoxon

TEST = "Wilcoxon signed-rank, two-sided, student vs teacher, paired by example"


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


def teacher_labels(fits: Iterable[dict], cells: Iterable[dict]) -> dict[str, str]:
    """Student label → the label of its teacher's row in the run, for students whose teacher (same
    name and parameters) the run also evaluated (``Store.fits`` and ``Store.cells`` rows)."""
    rows = {(cell["explainer"], cell["explainer_params"]): cell["explainer_label"] for cell in cells}
    labels = {}
    for fit in fits:
        teacher = json.loads(fit["teacher"] or "null")
        if teacher is not None and (teacher["name"], teacher["params"]) in rows:
            labels[fit["explainer_label"]] = rows[(teacher["name"], teacher["params"])]
    return labels


def pair_students(records: Iterable[dict], teachers: dict[str, str]) -> list[Pairing]:
    """Pairings over report rows (``Store.report_rows``), ``teachers`` from ``teacher_labels``."""
    values: dict[tuple[str, str, str, str, str], dict[tuple[int, str], float]] = defaultdict(dict)
    directions: dict[str, str] = {}
    for record in records:
        key = (record["dataset"], record["model"], record["variant"], record["metric_label"])
        value = record["value"]
        values[(*key, record["explainer_label"])][(record["seed"], record["example_id"])] = (
            float("nan") if value is None else value
        )
        directions[record["metric_label"]] = record["direction"]
    pairings = []
    for (dataset, model, variant, metric, student), student_values in values.items():
        teacher = teachers.get(student)
        teacher_values = values.get((dataset, model, variant, metric, teacher)) if teacher else None
        if teacher_values is None:
            continue
        pairings.append(
            Pairing(
                dataset, model, variant, metric, directions[metric], teacher, student,
                _mean(teacher_values), _mean(student_values),
                paired_wilcoxon(student_values, teacher_values),
            )
        )  # fmt: skip
    corrected = holm([pairing.comparison for pairing in pairings])
    return [
        Pairing(**{**pairing.__dict__, "comparison": comparison})
        for pairing, comparison in zip(pairings, corrected, strict=True)
    ]


def _mean(values: dict) -> float | None:
    finite = [value for value in values.values() if np.isfinite(value)]
    return float(np.mean(finite)) if finite else None
