"""L2E in the harness: students and teachers in suites and grids, the teacher-comparing metrics, cached
teacher attributions and students, the teacher-vs-student report, suite profiles. The student network
itself is tested in test_l2e_student.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from harness import Attribution, BenchError, PluginError, TextDataset
from harness.distillation import pair_students
from harness.grid import expand
from harness.registry import get_registry
from harness.report import Report, render
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite
from plugins.explainers.l2e import L2E
from plugins.metrics.faithfulness import TeacherAgreement
from plugins.metrics.runtime import SpeedUp
from tests.conftest import attribution, metric_input, tiny_suite_text, values_of

STUDENT = """
  - name: occlusion
  - name: l2e
    label: "student-{formulation}"
    params:
      teacher: {name: occlusion}
      formulation: %s
      train_documents: 30
      validation_documents: 8
      max_epochs: 3
      d_model: 16
      blocks: 1
      heads: 2"""
METRICS = """
  - name: prediction-agreement
  - name: teacher-agreement
  - name: runtime
  - name: speed-up"""


def student_suite(formulation: str = "sequence-labeling", extra: str = "") -> str:
    return tiny_suite_text(explainers=STUDENT % formulation, metrics=METRICS, extra=extra)


# -- metrics against hand-computed values ------------------------------------------------------------


def test_teacher_agreement_compares_the_models_predictions_on_both_explanations(classifier):
    # The toy model predicts positive iff the mean embedding of what is kept is > 0 (good = 2, bad = -2).
    # Top 30 % of 3 words = 1 word (0.9 rounded half up). Document 1: the student keeps "bad"
    # (→ negative), the teacher keeps "good" (→ positive): disagree, 0. Document 2: both keep "good": 1.
    student = [
        attribution(classifier, "good the bad", [0.1, 0.2, 0.9]),
        attribution(classifier, "good bad the", [0.9, 0.1, 0.2]),
    ]
    teacher = [
        attribution(classifier, "good the bad", [0.9, 0.1, 0.2]),
        attribution(classifier, "good bad the", [0.7, 0.3, 0.1]),
    ]
    data = metric_input(classifier, student)
    data.reference = metric_input(classifier, teacher[::-1])  # paired by example id, not position
    assert values_of(TeacherAgreement(), data).tolist() == [0.0, 1.0]


def test_speed_up_is_the_teachers_seconds_over_the_students_per_document(classifier):
    student = [
        attribution(classifier, "good", [0, 1, 0], seconds=0.5),
        attribution(classifier, "bad", [0, 1, 0]),
    ]
    teacher = [
        attribution(classifier, "bad", [0, 1, 0], seconds=3.0),
        attribution(classifier, "good", [0, 1, 0], seconds=2.0),
    ]
    data = metric_input(classifier, student)
    data.reference = metric_input(classifier, teacher)
    values = values_of(SpeedUp(), data)
    assert values[0] == 4.0  # 2.0 / 0.5
    assert math.isnan(values[1])  # a student time of 0 has no ratio


def test_pairings_are_two_sided_wilcoxon_with_holm_over_all_pairs():
    rng = np.random.default_rng(0)
    teacher_a, student_a = rng.normal(0, 1, 20), rng.normal(0.8, 1, 20)
    teacher_b, student_b = rng.normal(1, 1, 20), rng.normal(1.1, 1, 20)

    def rows(metric, direction, explainer, values):
        return [
            {"dataset": "d", "model": "m", "variant": "default", "metric_label": metric, "direction": direction,
             "explainer_label": explainer, "seed": 0, "example_id": str(i), "value": float(v),
             "dataset_id": "d", "model_id": "m", "metric_id": metric, "explainer_id": explainer, "unit": str(i)}
            for i, v in enumerate(values)
        ]  # fmt: skip

    records = (
        rows("faith", "higher", "T", teacher_a) + rows("faith", "higher", "S", student_a)
        + rows("cost", "lower", "T", teacher_b) + rows("cost", "lower", "S", student_b)
        + rows("cost", "lower", "unrelated", teacher_b)
    )  # fmt: skip
    pairings = pair_students(records, {"S": ("T", "teacher")})
    assert [(p.metric, p.teacher, p.student) for p in pairings] == [("faith", "T", "S"), ("cost", "T", "S")]
    raw = [wilcoxon(student_a - teacher_a).pvalue, wilcoxon(student_b - teacher_b).pvalue]
    _, adjusted, _, _ = multipletests(raw, method="holm")
    assert [p.comparison.p_value for p in pairings] == pytest.approx(raw)
    assert [p.comparison.p_adjusted for p in pairings] == pytest.approx(adjusted)
    assert [p.mean_student for p in pairings] == pytest.approx([student_a.mean(), student_b.mean()])
    faith = pairings[0]
    assert faith.outcome == (
        "student better" if faith.comparison.significant else "no significant difference"
    )


# -- suites and grids ------------------------------------------------------------------------------


def test_a_student_carries_its_validated_teacher_and_teacher_metrics_only_get_student_cells(write_suite):
    loaded = load_suite(write_suite(student_suite()), get_registry())
    occlusion, student = loaded.entries["explainers"]
    assert student.label == "student-sequence-labeling"
    assert student.teacher is not None and student.teacher.params_json == occlusion.params_json
    assert student.identity["teacher"] == occlusion.identity  # the teacher's version is in the student's key
    cells = expand(loaded)
    compared = [cell for cell in cells if cell.metric.cls.compares == "teacher"]
    assert {cell.explainer.label for cell in compared} == {"student-sequence-labeling"}
    assert all(cell.reference.explainer == occlusion for cell in compared)
    assert len(cells) == 2 * 2 + 1 * 2  # occlusion: agreement, runtime; the student: all four


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ("teacher: {name: occlusion}", "teacher: {name: oclusion}",
         "explainers[1].params.teacher.name: unknown explainer 'oclusion'; did you mean 'occlusion'?"),
        ("teacher: {name: occlusion}", "teacher: {name: occlusion, params: {windows: 2}}",
         "explainers[1].params.teacher.params.windows: unknown key 'windows'"),
        ('label: "student-{formulation}"', 'label: "student-{formulations}"',
         "explainers[1].label: the label names 'formulations' but only parameters set here can be used"),
    ],
)  # fmt: skip
def test_bad_teachers_and_labels_are_one_line_errors(write_suite, before, after, message):
    text = student_suite().replace(before, after)
    with pytest.raises(BenchError) as error:
        load_suite(write_suite(text), get_registry())
    assert message in str(error.value) and "\n" not in str(error.value)


PROFILES = """profiles:
  small:
    batch_size: 2
    metrics:
      - name: runtime"""


def test_a_profile_replaces_the_suites_keys_and_changes_its_hash(write_suite):
    path = write_suite(student_suite(extra=PROFILES))
    base, small = load_suite(path, get_registry()), load_suite(path, get_registry(), "small")
    assert base.suite.batch_size == 4 and small.suite.batch_size == 2
    assert [m.name for m in small.entries["metrics"]] == ["runtime"]
    assert small.suite.profile == "small" and small.hash != base.hash


@pytest.mark.parametrize(
    ("extra", "profile", "message"),
    [
        (PROFILES, "big", "--profile: the suite has no profile 'big' (it has: small)"),
        ("", "big", "--profile: the suite has no profile 'big' (it defines none)"),
        (
            "profiles:\n  small: {name: other}",
            None,
            "profiles: Value error, profile 'small' cannot set 'name'",
        ),
        ("profile: small", None, "profile: choose a profile with --profile NAME"),
    ],
)
def test_bad_profiles_are_one_line_errors(write_suite, extra, profile, message):
    with pytest.raises(BenchError) as error:
        load_suite(write_suite(student_suite(extra=extra)), get_registry(), profile)
    assert message.removeprefix("profiles: Value error, ") in str(error.value) and "\n" not in str(
        error.value
    )


def test_a_profile_error_points_at_the_profiles_line(write_suite):
    text = student_suite(extra=PROFILES.replace("name: runtime", "name: runtim"))
    with pytest.raises(BenchError) as error:
        load_suite(write_suite(text), get_registry(), "small")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "runtim" in row and "profiles" not in row)
    assert f":{line}: metrics[0].name: unknown metric 'runtim'" in str(error.value)


def test_l2e_outside_the_runner_says_what_it_needs(classifier):
    with pytest.raises(PluginError, match="trained through the runner"):
        L2E(L2E.Params(teacher={"name": "occlusion"})).fit(
            classifier, TextDataset("t", ("a", "b"), (), (), ())
        )


# -- end to end --------------------------------------------------------------------------------------


def run(path, tmp_path, results="results", **options):
    loaded = load_suite(path, get_registry())
    settings = RunOptions(
        results_dir=tmp_path / results, cache_dir=tmp_path / "cache", progress=False, **options
    )
    result = Runner(loaded, settings).run()
    assert not result.failed, result.failed
    return Store(tmp_path / results), result.run_id


def stored_attributions(store: Store, run_id: str) -> dict[tuple[str, str], Attribution]:
    fields = set(Attribution.__dataclass_fields__)
    return {
        (row["explainer"], row["example_id"]): Attribution.from_dict(
            {k: v for k, v in row.items() if k in fields}
        )
        for row in store.attributions(run_id)
    }


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("l2e")
    path = tmp_path / "suite.yaml"
    path.write_text(student_suite())
    store, run_id = run(path, tmp_path)
    return tmp_path, store, run_id


def test_a_student_is_trained_evaluated_against_its_teacher_and_reported(student_run):
    _, store, run_id = student_run
    attributions = stored_attributions(store, run_id)
    student = {example: a for (name, example), a in attributions.items() if name == "l2e"}
    teacher = {example: a for (name, example), a in attributions.items() if name == "occlusion"}
    assert len(student) == 6 and set(student) == set(teacher)
    assert all(set(a.labels) <= {-2, -1, 0, 1, 2} for a in student.values())  # sequence labelling labels
    speed_ups = [r for r in store.records(run_id) if r["metric"] == "speed-up"]
    assert len(speed_ups) == 6
    for record in speed_ups:
        example = record["example_id"]
        assert record["value"] == pytest.approx(teacher[example].seconds / student[example].seconds)
    # A speed-up reads two timings: the cell says where and when each was measured.
    [speed_up_cell] = [cell for cell in store.cells(run_id) if cell["metric"] == "speed-up"]
    [runtime_cell] = [c for c in store.cells(run_id) if c["metric"] == "runtime" and c["explainer"] == "l2e"]
    assert len(speed_up_cell["timing"]) == 2 and speed_up_cell["timing"][0] == runtime_cell["timing"][0]
    assert all(set(t) >= {"host", "device", "measured_at"} for t in speed_up_cell["timing"])
    (fit,) = store.fits(run_id)
    assert fit["explainer_label"] == "student-sequence-labeling"
    assert fit["report"]["train_documents"] == 30 and fit["report"]["validation_documents"] == 8
    assert (
        fit["report"]["teacher_seconds"] > 0
        and 1 <= fit["report"]["best_epoch"] <= fit["report"]["epochs"] <= 3
    )
    report = Report.build(store, run_id)
    pairs = {(p.metric, p.teacher, p.student) for p in report.pairings}
    assert pairs == {
        ("prediction-agreement", "occlusion", "student-sequence-labeling"),
        ("runtime", "occlusion", "student-sequence-labeling"),
    }
    document = json.loads(render(report, "json"))
    assert len(document["teacher_vs_student"]["pairings"]) == 2
    assert document["explainer_training"][0]["report"]["train_documents"] == 30
    markdown = render(report, "md")
    assert (
        "## teacher vs student" in markdown and "## explainer training (not counted in runtime)" in markdown
    )


def test_teacher_attributions_and_students_are_reused_from_the_cache(student_run, monkeypatch):
    tmp_path, _, _ = student_run
    from plugins.explainers import l2e as l2e_module
    from plugins.explainers.occlusion import Occlusion

    calls = []
    explain = Occlusion.explain
    monkeypatch.setattr(Occlusion, "explain", lambda self, *args: calls.append(1) or explain(self, *args))
    # Another suite distilling the same teacher on the same model: the teacher explains nothing again.
    path = tmp_path / "ranking.yaml"
    path.write_text(student_suite("ranking"))
    run(path, tmp_path, results="ranking")
    assert calls == []
    # The same student on other test documents: it is read from the cache, not trained again.
    monkeypatch.setattr(l2e_module, "train_student", lambda *args, **kwargs: pytest.fail("student retrained"))
    path = tmp_path / "fewer.yaml"
    path.write_text(student_suite().replace("sample: 6", "sample: 4"))
    store, run_id = run(path, tmp_path, results="fewer")
    assert store.fits(run_id)[0]["report"]["train_documents"] == 30
