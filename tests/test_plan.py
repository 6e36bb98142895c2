"""The run as a plan: a resolved suite's cells become a graph of tasks (load dataset → build model → fit
explainer → explain → score) shared as the runner shares work, with reference and teacher edges, known
before anything runs and serialisable as JSON. Counts are computed by hand from each suite."""

from __future__ import annotations

import json

import pytest

from harness.entries import canonical_json
from harness.grid import expand
from harness.plan import STAGES, Plan, Task, build_plan, selection, source_identity
from harness.registry import get_registry
from harness.suite import load_suite
from tests.conftest import TINY_DATA, tiny_suite_text
from tests.test_cli_errors import bench_main
from tests.test_l2e import student_suite
from tests.test_randomization import randomization_suite

JACCARD_ONLY = """
  - name: jaccard
    params: {k: 25, reference: "init:1"}"""

TWO_SPLITS = f"""name: two-splits
version: 1
seeds: [0]
device: cpu
batch_size: 4
datasets:
  - name: jsonl
    label: tiny-test
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
    sample: 6
  - name: jsonl
    label: tiny-train
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
    split: train
    sample: 4
models:
  - name: bow
    params: {{dim: 8, max_epochs: 20}}
explainers:
  - name: random
  - name: saliency
metrics:
  - name: comprehensiveness
  - name: runtime
"""

TRAINED_ELSEWHERE = f"""name: trained-elsewhere
version: 1
seeds: [0, 1]
device: cpu
batch_size: 4
datasets:
  - name: jsonl
    label: quarter
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
  - name: jsonl
    label: half
    params: {{path: {TINY_DATA}, test_fraction: 0.5}}
models:
  - name: bow
    params: {{dim: 8}}
    train_on: {{name: jsonl, params: {{path: {TINY_DATA}, test_fraction: 0.25}}}}
explainers:
  - name: random
metrics:
  - name: runtime
"""


def plan_of(path, limit=None):
    loaded = load_suite(path, get_registry())
    cells = expand(loaded)
    return loaded, cells, build_plan(loaded, cells, limit)


def counts(*values: int) -> dict[str, int]:
    return dict(zip(STAGES, values, strict=True))


def explain_content(dataset, model, variant, explainer, seed, limit=None) -> str:
    """What an explain task of an explanation holds, as canonical JSON."""
    return canonical_json(
        {
            "dataset": source_identity(dataset),
            "selection": selection(dataset, limit),
            "model": model.identity,
            "variant": variant,
            "seed": seed,
            "explainer": explainer.identity,
        }
    )


def task_content(task: Task) -> str:
    return canonical_json({k: v for k, v in task.data.items() if k != "cell" and k != "metric"})


def for_cells(plan: Plan) -> list[Task]:
    """Explain tasks (of cells and of references)."""
    return plan.stage("explain")


# -- counts per stage -----------------------------------------------------------------------------------


def test_the_tiny_suite_is_one_load_one_model_one_explanation_per_explainer_one_score_per_cell(write_suite):
    _, cells, plan = plan_of(write_suite(tiny_suite_text()))
    # 1 dataset × bow × 2 explainers × 3 metrics × 1 seed
    assert len(cells) == 6
    assert plan.by_stage() == counts(1, 1, 0, 2, 2, 6)
    assert plan.counts_line() == "1 load-dataset, 1 build-model, 0 fit-explainer, 2 explain, 2 perturb, 6 score"


def test_a_reference_variant_is_explained_though_no_cell_scores_it(tmp_path):
    path = randomization_suite(
        tmp_path,
        variants="[default, init:2, untrained]",
        metrics=JACCARD_ONLY,
        expectations="expectations: []",
    )
    _, cells, plan = plan_of(path)
    # jaccard on init:2 and untrained (none on its reference, default) × 2 explainers; 3 models; the
    # 4 cells' explanations and the 2 reference explanations on the default model.
    assert plan.by_stage() == counts(1, 3, 0, 6, 0, 4)
    references = {task.id for task in plan.stage("explain") if task.variant == "default"}
    assert len(references) == 2
    assert {cell.variant for cell in cells} == {"init:2", "untrained"}  # no score on the reference itself
    for reference in references:  # each is the second input of the jaccard scores of its explainer
        assert [d.inputs.index(reference) for d in plan.dependents(reference)] == [1, 1]
    for score in plan.stage("score"):
        cell = next(cell for cell in cells if cell.id == score.cell)
        own, reference = (plan.task(task_id) for task_id in score.inputs)
        assert (own.variant, reference.variant) == (cell.variant, "default")
        assert own.explainer == reference.explainer == cell.explainer.identity
        assert reference.id in references


def test_the_reference_of_variant_cells_is_shared_with_cells_on_the_reference_variant(tmp_path):
    _, cells, plan = plan_of(randomization_suite(tmp_path))
    # jaccard: 2 variants × 2 explainers; switching-point: 3 variants × 2 explainers; the jaccard
    # reference explanations (default variant) are switching-point's own.
    assert len(cells) == 10
    assert plan.by_stage() == counts(1, 3, 0, 6, 0, 10)


def test_entries_on_two_splits_of_one_file_share_the_load_and_the_model_not_the_explanations(write_suite):
    _, _, plan = plan_of(write_suite(TWO_SPLITS))
    assert plan.by_stage() == counts(1, 1, 0, 4, 0, 8)
    (load,) = plan.stage("load-dataset")
    assert "split" not in load.dataset and "sample" not in load.dataset
    assert {(task.selection["split"], task.selection["sample"]) for task in plan.stage("explain")} == {
        ("test", 6),
        ("train", 4),
    }
    assert {d.stage for d in plan.dependents(load.id)} == {"build-model", "explain"}


def test_a_model_with_train_on_is_built_once_per_seed_for_every_dataset_it_explains(write_suite):
    _, _, plan = plan_of(write_suite(TRAINED_ELSEWHERE))
    # sources quarter (also the training data) and half; 2 seeds × 1 model; 2 datasets × 2 seeds explained
    assert plan.by_stage() == counts(2, 2, 0, 4, 0, 4)
    quarter = next(
        task for task in plan.stage("load-dataset") if task.dataset["params"]["test_fraction"] == 0.25
    )
    for model in plan.stage("build-model"):
        assert model.inputs == (quarter.id,)
        assert len(plan.dependents(model.id)) == 2  # one explanation of each dataset


def test_a_students_explanation_needs_its_fit_which_needs_the_model(write_suite):
    _, cells, plan = plan_of(write_suite(student_suite()))
    # occlusion: prediction-agreement, runtime (no teacher to compare with); l2e: all 4 metrics.
    # Explain: occlusion and l2e on the test sample; the fit asks the teacher for its own documents.
    assert len(cells) == 6
    assert plan.by_stage() == counts(1, 1, 1, 2, 0, 6)
    (load,), (model,), (fit,) = (
        plan.stage("load-dataset"),
        plan.stage("build-model"),
        plan.stage("fit-explainer"),
    )
    student = next(cell.explainer for cell in cells if cell.explainer.teacher is not None)
    assert fit.explainer == student.identity
    assert fit.inputs == (load.id, model.id)
    (explained,) = [task for task in plan.stage("explain") if task.explainer == student.identity]
    assert fit.id in explained.inputs
    assert [d.id for d in plan.dependents(fit.id)] == [explained.id]


def test_teacher_metrics_score_the_students_explanation_against_the_teachers(write_suite):
    _, cells, plan = plan_of(write_suite(student_suite()))
    teacher_cell = next(c for c in cells if c.explainer.teacher is None)
    teacher = next(t for t in for_cells(plan) if t.explainer == teacher_cell.explainer.identity)
    comparing = [cell for cell in cells if cell.metric.cls.compares == "teacher"]
    assert len(comparing) == 2  # teacher-agreement and speed-up of the student
    for cell in comparing:
        (score,) = [task for task in plan.stage("score") if task.cell == cell.id]
        assert plan.task(score.inputs[0]).explainer == cell.explainer.identity
        assert score.inputs[1] == teacher.id


# -- the graph ------------------------------------------------------------------------------------------

SUITES = {
    "tiny": lambda tmp_path, write: write(tiny_suite_text()),
    "randomization": lambda tmp_path, write: randomization_suite(tmp_path),
    "jaccard-only": lambda tmp_path, write: randomization_suite(
        tmp_path,
        variants="[default, init:2, untrained]",
        metrics=JACCARD_ONLY,
        expectations="expectations: []",
    ),
    "two-splits": lambda tmp_path, write: write(TWO_SPLITS),
    "trained-elsewhere": lambda tmp_path, write: write(TRAINED_ELSEWHERE),
    "student": lambda tmp_path, write: write(student_suite()),
}


@pytest.mark.parametrize("name", SUITES)
def test_every_tasks_inputs_come_before_it(name, tmp_path, write_suite):
    _, _, plan = plan_of(SUITES[name](tmp_path, write_suite))
    position = {task.id: index for index, task in enumerate(plan)}
    for task in plan:
        assert all(position[needed] < position[task.id] for needed in task.inputs), task.label


@pytest.mark.parametrize("name", SUITES)
def test_explain_tasks_are_one_to_one_the_explanations_and_references_of_the_cells(
    name, tmp_path, write_suite
):
    _, cells, plan = plan_of(SUITES[name](tmp_path, write_suite), limit=3)
    explanations = {cell.explanation for cell in cells}
    explanations |= {cell.reference.explanation for cell in cells if cell.reference is not None}
    expected = sorted(explain_content(d, m, v, e, s, limit=3) for d, m, v, e, s in explanations)
    assert sorted(task_content(task) for task in for_cells(plan)) == expected


@pytest.mark.parametrize("name", SUITES)
def test_one_score_per_cell_after_its_explanation(name, tmp_path, write_suite):
    _, cells, plan = plan_of(SUITES[name](tmp_path, write_suite))
    scores = plan.stage("score")
    assert [task.cell for task in scores] == [cell.id for cell in cells]
    for score, cell in zip(scores, cells, strict=True):
        own = plan.task(score.inputs[0])
        assert task_content(own) == explain_content(
            cell.dataset, cell.model, cell.variant, cell.explainer, cell.seed
        )
        assert len(plan.explanations(score)) == (1 if cell.reference is None else 2)


def test_the_removal_metrics_of_an_explanation_are_planned_together_in_one_perturb_task(write_suite):
    # comprehensiveness and sufficiency remove tokens; runtime does not
    _, cells, plan = plan_of(write_suite(tiny_suite_text()))
    perturbs = plan.stage("perturb")
    assert len(perturbs) == 2  # one per explainer
    for perturb in perturbs:
        (explanation,) = perturb.inputs
        assert plan.task(explanation).stage == "explain"
        planned = [cell for cell in cells if cell.id in perturb.cells]
        assert sorted(cell.metric.name for cell in planned) == ["comprehensiveness", "sufficiency"]
        for score in plan.dependents(perturb.id):
            assert score.stage == "score" and score.cell in perturb.cells
            assert score.inputs == (explanation, perturb.id)
    runtime = [task for task in plan.stage("score") if "runtime" in task.label]
    assert runtime and all(len(task.inputs) == 1 for task in runtime)


def test_limit_selects_examples_of_the_explanations_only(write_suite):
    path = write_suite(tiny_suite_text())
    _, _, plain = plan_of(path)
    _, _, limited = plan_of(path, limit=2)
    assert [t.id for t in limited.stage("load-dataset")] == [t.id for t in plain.stage("load-dataset")]
    assert [t.id for t in limited.stage("build-model")] == [t.id for t in plain.stage("build-model")]
    assert {t.selection["limit"] for t in limited.stage("explain")} == {2}
    assert not {t.id for t in limited.stage("score")} & {t.id for t in plain.stage("score")}
    assert limited.suite["limit"] == 2


def test_a_plan_out_of_order_is_refused(write_suite):
    _, _, plan = plan_of(write_suite(tiny_suite_text()))
    with pytest.raises(ValueError, match="does not come before it"):
        Plan(tuple(reversed(plan.tasks)), plan.suite)


# -- JSON -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["student", "jaccard-only"])
def test_the_plan_round_trips_through_json_as_plain_data(name, tmp_path, write_suite):
    _, _, plan = plan_of(SUITES[name](tmp_path, write_suite), limit=5)
    text = plan.as_json()
    assert "object at 0x" not in text and "<class" not in text and "Params(" not in text
    value = json.loads(text)
    assert value["stages"] == plan.by_stage()
    assert len(value["tasks"]) == len(plan)
    back = Plan.from_json(text)
    assert back == plan
    assert [task.label for task in back] == [task.label for task in plan]
    assert back.as_json() == text


def test_a_task_whose_content_was_edited_is_refused(write_suite):
    _, _, plan = plan_of(write_suite(tiny_suite_text()))
    value = plan.as_dict()
    explain = next(task for task in value["tasks"] if task["stage"] == "explain")
    explain["seed"] = 7
    with pytest.raises(ValueError, match="does not match its content"):
        Plan.from_dict(value)


# -- bench validate --plan ------------------------------------------------------------------------------


def test_validate_with_plan_prints_the_tasks_per_stage(monkeypatch, capsys, write_suite):
    path = write_suite(student_suite())
    code, out, _ = bench_main(monkeypatch, capsys, "validate", path, "--plan")
    assert code == 0
    lines = out.splitlines()
    assert "valid" in lines[0]
    assert lines[-1] == "plan: 1 load-dataset, 1 build-model, 1 fit-explainer, 2 explain, 0 perturb, 6 score"


def test_validate_without_plan_prints_no_plan(monkeypatch, capsys, write_suite):
    code, out, _ = bench_main(monkeypatch, capsys, "validate", write_suite(tiny_suite_text()))
    assert code == 0
    assert "plan:" not in out


def test_validate_writes_the_plan_as_json(monkeypatch, capsys, tmp_path, write_suite):
    path = write_suite(tiny_suite_text())
    target = tmp_path / "plan.json"
    code, out, err = bench_main(monkeypatch, capsys, "validate", path, "--plan-json", target, "--limit", "3")
    assert code == 0
    assert "plan: 1 load-dataset, 1 build-model, 0 fit-explainer, 2 explain, 2 perturb, 6 score" in out
    assert f"wrote the plan's 12 tasks to {target}" in err
    plan = Plan.from_json(target.read_text(encoding="utf-8"))
    loaded, cells, expected = plan_of(path, limit=3)
    assert plan == expected
