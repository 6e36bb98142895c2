"""L2E: an explainer network distilled from any explainer (Situ et al. 2021, Algorithm 1)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field, PositiveInt

from harness import (
    Attribution,
    Classifier,
    Encoding,
    Explainer,
    ExplainerParams,
    FitContext,
    LabelledScores,
    PluginError,
    TeacherSpec,
    derive_seed,
)
from plugins.explainers._l2e_student import StudentBatch, StudentNetwork, scores_and_labels, train_student

PAPER = (
    "Situ et al. 2021, Learning to Explain: Generating Stable Explanations Fast (L2E), Algorithm 1, §3, §4.3"
)


class L2EParams(ExplainerParams):
    teacher: TeacherSpec = Field(
        description="the explainer distilled: any registered explainer with its params"
    )
    formulation: Literal["ranking", "sequence-labeling"] = Field(
        "sequence-labeling",
        description="ranking: learn the order of |teacher weight| (pairwise loss, quadratic in length); "
        "sequence-labeling: learn the teacher's weights discretised into 5 labels (linear in length)",
    )
    train_documents: PositiveInt | None = Field(
        500,
        description="training budget: the first N documents of the train split, explained by the teacher "
        "(null: the whole split)",
    )
    validation_documents: PositiveInt | None = Field(
        100, description="the first N documents of the validation split, for early stopping (null: all)"
    )
    max_epochs: PositiveInt = Field(40, description="training budget: at most this many epochs")
    patience: PositiveInt = Field(
        8,
        description="stop after this many epochs without a lower validation loss (students often sit on "
        "a loss plateau for their first epochs)",
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate")
    student_batch_size: PositiveInt = Field(32, description="documents per training step")
    init: PositiveInt = Field(
        1, description="which student initialisation (the paper averages 3: grid over init: [1, 2, 3])"
    )
    d_model: PositiveInt = Field(128, description="student width")
    blocks: PositiveInt = Field(4, description="Transformer blocks of the student (the paper: 4)")
    heads: PositiveInt = Field(4, description="attention heads of the student (the paper: 4)")


class L2E(Explainer):
    """Learning to Explain: a small Transformer trained to reproduce a teacher explainer, then one forward pass.

    Training (Algorithm 1): the black box predicts ŷ for the first ``train_documents`` of the train split,
    the teacher explains each for ŷ, and the student — a Transformer encoder (4 blocks, 4 heads) over the
    black box's input word embeddings, with ŷ as a label token at the start and after the end of the
    document (§4.3) — is fitted on those triples, with early stopping on the validation split's teacher
    explanations. The teacher's attributions and the trained student are cached content-addressed, so
    every suite distilling the same teacher on the same model reuses them; the training cost is reported
    apart from the per-document runtime.

    ``ranking``: the pairwise loss of §3 (for each token pair, the one with the larger |teacher weight|
    should score higher); its cost is quadratic in length (B·L² terms: fine at a few hundred tokens), and
    its scores carry no sign. ``sequence-labeling``: each token gets one of {high negative, low negative,
    neutral, low positive, high positive} (the teacher's weights split at the mean of the document's
    positive and of its negative weights) and cross-entropy per token; the output is a signed score (the
    expected label value) and a label per token, for label-wise metrics (Eq. 1 stability).

    Deviations from the paper: Adam instead of SGD at 1e-4 "until convergence" (a CPU budget), and the
    student reads the black box's frozen word embeddings instead of its own vocabulary.
    """

    name: ClassVar[str] = "l2e"
    Params = L2EParams
    paper: ClassVar[str] = PAPER

    @classmethod
    def score_order_for(cls, params: L2EParams) -> Literal["signed", "absolute"]:
        """The order the student learned, in which it is compared with its teacher: ``absolute`` for
        ``ranking`` (the order of |teacher weight|; its softplus scores carry no sign, and the paper
        compares it on "the top 30 % of the important words", §4.5, App. D Table 9), ``signed`` for
        ``sequence-labeling`` (the teacher's signed labels; positive and negative words, Tables 1, 2 and
        8). The teacher-vs-student pairing (``harness.distillation``) pairs a student only on metric
        cells that take units in this order (a metric's ``score_order_for``) or declare none."""
        return "absolute" if params.formulation == "ranking" else "signed"

    def __init__(self, params: L2EParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        self.network: StudentNetwork | None = None
        self.report: dict = {}

    # -- training -------------------------------------------------------------------------------------
    def fit(self, classifier: Classifier, dataset, context: FitContext | None = None) -> None:
        if context is None or context.teacher_attributions is None:
            raise PluginError("l2e is trained through the runner, which lends it the teacher's attributions")

        def read(directory: Path) -> tuple[dict, StudentNetwork]:
            report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
            network = self._network(classifier)
            state = torch.load(directory / "student.pt", map_location=classifier.device, weights_only=True)
            network.load_state_dict(state)
            return report, network

        self.report, self.network = context.cached(
            lambda path: self._train(classifier, dataset, context, path), read
        )
        self.network.to(classifier.device).eval()

    def fit_report(self) -> dict:
        return self.report

    def _network(self, classifier: Classifier) -> StudentNetwork:
        features = classifier.input_embeddings(
            torch.tensor([[classifier.pad_token_id]], device=classifier.device)
        )
        params = self.params
        return StudentNetwork(
            features.shape[-1], len(classifier.labels), params.formulation,
            d_model=params.d_model, blocks=params.blocks, heads=params.heads,
        )  # fmt: skip

    def _train(self, classifier: Classifier, dataset, context: FitContext, directory: Path) -> None:
        params = self.params
        train = list(dataset.train[: params.train_documents])
        validation = list(dataset.validation[: params.validation_documents])
        if not validation:  # no validation split: hold out the last tenth of the training documents
            cut = max(1, len(train) // 10)
            train, validation = train[:-cut], train[-cut:]
        if len(train) < 2:
            raise PluginError(f"l2e needs training documents; dataset '{dataset.name}' has {len(train)}")
        context.progress(f"teacher {params.teacher.name} on {len(train)} train documents", 0, len(train))
        teacher_train = context.teacher_attributions(train, "train")
        teacher_validation = context.teacher_attributions(validation, "validation")
        torch.manual_seed(derive_seed(context.seed, f"l2e-init:{params.init}"))
        network = self._network(classifier).to(classifier.device)

        def on_epoch(epoch: int, loss: float) -> None:
            context.progress(
                f"training student, epoch {epoch} (validation loss {loss:.4f})", epoch, params.max_epochs
            )

        report = train_student(
            network,
            self._batches(classifier, teacher_train),
            self._batches(classifier, teacher_validation),
            formulation=params.formulation,
            max_epochs=params.max_epochs,
            patience=params.patience,
            learning_rate=params.learning_rate,
            seed=derive_seed(context.seed, f"l2e-order:{params.init}"),
            on_epoch=on_epoch,
        )
        # The teacher's own measured explanation time, also when its attributions came from the cache.
        teacher_seconds = sum(a.seconds for a in (*teacher_train, *teacher_validation))
        report = {
            "train_documents": len(teacher_train),
            "validation_documents": len(teacher_validation),
            "teacher_seconds": round(teacher_seconds, 3),
            "student_seconds": round(report.pop("seconds"), 3),
            **report,
        }
        torch.save(network.state_dict(), directory / "student.pt")
        (directory / "report.json").write_text(json.dumps(report), encoding="utf-8")

    def _batches(self, classifier: Classifier, attributions: Sequence[Attribution]) -> list[StudentBatch]:
        """Teacher attributions as padded batches, documents of similar length together."""
        ordered = sorted(attributions, key=lambda a: len(a.input_ids))
        size = self.params.student_batch_size
        batches = []
        for start in range(0, len(ordered), size):
            group = ordered[start : start + size]
            length = max(len(a.input_ids) for a in group)
            input_ids = torch.full((len(group), length), classifier.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(group), length), dtype=torch.long)
            mask = torch.zeros((len(group), length), dtype=torch.bool)
            weights = torch.zeros((len(group), length), dtype=torch.float32)
            for row, a in enumerate(group):
                n = len(a.input_ids)
                input_ids[row, :n] = torch.tensor(a.input_ids)
                attention_mask[row, :n] = 1
                mask[row, :n] = torch.tensor([segment >= 0 for segment in a.segments])
                weights[row, :n] = torch.tensor(a.scores, dtype=torch.float32)
            device = classifier.device
            batches.append(
                StudentBatch(
                    features=self._features(classifier, input_ids.to(device)),
                    attention_mask=attention_mask.to(device),
                    mask=mask.to(device),
                    predicted=torch.tensor([a.target for a in group], device=device),
                    weights=weights.to(device),
                )
            )
        return batches

    @staticmethod
    def _features(classifier: Classifier, input_ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return classifier.input_embeddings(input_ids).detach().float()

    # -- explaining -----------------------------------------------------------------------------------
    @torch.no_grad()
    def explain(
        self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor
    ) -> LabelledScores | torch.Tensor:
        if self.network is None:
            raise PluginError("l2e explains only after fit")
        output = self.network(
            self._features(classifier, encoding.input_ids),
            encoding.attention_mask,
            targets.to(encoding.input_ids.device),
        )
        scores, labels = scores_and_labels(output, self.params.formulation)
        if labels is None:
            return scores
        return LabelledScores(scores, labels)
