"""One batch explained: the loop the runner stores and the conformance kit checks, written once.

``explain_batch`` encodes a batch of examples, asks the model for its class probabilities, picks the
targets (the predicted class, or the class ``target`` names), hands the explainer a copy of the encoding
and targets (``harness.boundary``: the ids and tokens stored are those the model read), times the call,
wraps what it returned in an ``Explanation``, and turns token scores into word scores when the explainer's
``granularity`` is ``word``. ``ExplainedBatch.problems`` says what is wrong with the result, in the order
the runner reports it (the first fails the explanation's cells; the kit reports them all), and
``ExplainedBatch.attributions`` gives what the runner stores.

The explain stage (``harness.stages``) and the conformance kit (``harness.testing``) both call it, so the
kit checks the scores a run stores: a word-level explainer's word scores, not its token scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from harness.attribution import Attribution, aggregate_words, attributions_from_batch
from harness.boundary import encoding_copy, seconds_problem
from harness.classifier import Classifier, Encoding
from harness.data import Example
from harness.errors import PluginError
from harness.plugin import Explainer, Explanation, Params


def check_target(params: Params, classifier: Classifier) -> None:
    """Raise ``PluginError`` when the class an explainer's ``target`` names does not exist."""
    target = getattr(params, "target", "predicted")
    if target != "predicted" and int(target) >= len(classifier.labels):
        raise PluginError(
            f"target class {target} does not exist: the model has {len(classifier.labels)} classes"
        )


def targets_for(params: Params, log_probabilities: torch.Tensor) -> torch.Tensor:
    """The class each example is explained for: the predicted one, or the one ``target`` names."""
    target = getattr(params, "target", "predicted")
    predicted = log_probabilities.argmax(dim=-1)
    return predicted if target == "predicted" else torch.full_like(predicted, int(target))


@dataclass
class ExplainedBatch:
    """A batch of examples and what an explainer said about it.

    ``encoding``, ``log_probabilities`` and ``targets`` are the batch as the model read it; ``handed`` and
    ``handed_targets`` the copies the explainer was handed, as it left them; ``explanation`` what it
    returned; ``scores`` and ``extras`` what is stored (word scores for ``granularity: word``; None when
    the explanation's shapes are wrong); ``seconds`` per example, measured or as the explanation states
    them; ``problems`` (check, what it returned that is wrong) in the order the runner reports them."""

    encoding: Encoding
    log_probabilities: torch.Tensor
    targets: torch.Tensor
    handed: Encoding
    handed_targets: torch.Tensor
    explanation: Explanation
    scores: torch.Tensor | None
    extras: dict[str, torch.Tensor] | None
    seconds: float
    problems: list[tuple[str, str]] = field(default_factory=list)

    def attributions(self, batch: int | None = None) -> list[Attribution]:
        """One attribution per example (padding dropped), as the runner stores them; ``batch`` is the
        batch's index in the explained examples. Only for a batch without problems."""
        if self.problems:
            raise ValueError(f"a batch with problems has no attributions: {self.problems[0][1]}")
        explanation = self.explanation
        attributions = attributions_from_batch(
            self.encoding.example_ids,
            self.encoding,
            self.scores,
            self.targets,
            self.log_probabilities,
            self.seconds,
            labels=explanation.labels,
            batch=batch,
            groups=explanation.groups,
            group_scores=explanation.group_scores,
            extras=self.extras,
        )
        if explanation.seconds is not None:  # the explainer states its cost (NaN: unknown)
            for attribution, stated in zip(attributions, explanation.seconds.tolist(), strict=True):
                attribution.seconds = float(stated)
        return attributions


def encode(classifier: Classifier, examples: Sequence[Example]) -> Encoding:
    """``examples`` encoded by the classifier, with their ids."""
    encoding = classifier.encode(examples)
    encoding.example_ids = [example.id for example in examples]
    return encoding


def explain_batch(
    explainer: Explainer,
    classifier: Classifier,
    examples: Sequence[Example],
    params: Params,
    *,
    warm_up: bool = False,
    after_call: Callable[[], None] | None = None,
) -> ExplainedBatch:
    """``examples`` explained by ``explainer`` (built with ``params``) on ``classifier``.

    ``warm_up``: first explain the first example once, untimed (lazy imports, the allocator, CUDA
    kernels and one-time set-up would otherwise be charged to whichever explainer runs first); its result
    is checked with the batch's. ``after_call`` runs right after the warm-up and after the timed call,
    untimed (the runner checks there that the explainer left the model unchanged: a second call could undo
    what the first did). Raises what the explainer raises."""
    encoding = encode(classifier, examples)
    log_probabilities = classifier.log_probabilities(encoding)
    targets = targets_for(params, log_probabilities)
    if warm_up:
        explainer.explain(classifier, encode(classifier, examples[:1]), targets[:1].clone())
        if after_call is not None:  # a model changed by the warm-up is caught there, not after a second call
            after_call()
    handed, handed_targets = encoding_copy(encoding), targets.clone()
    cuda = classifier.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    output = explainer.explain(classifier, handed, handed_targets)
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / len(examples)
    if after_call is not None:
        after_call()
    explanation = output if isinstance(output, Explanation) else Explanation(output)
    explained = ExplainedBatch(
        encoding, log_probabilities, targets, handed, handed_targets, explanation, None, None, seconds
    )
    problem = explanation.problem(tuple(encoding.input_ids.shape))
    if problem is not None:
        explained.problems.append(("shape", problem))
        return explained
    scores = explanation.scores
    extras = {
        name: values if values.is_floating_point() else values.float()
        for name, values in (explanation.extras or {}).items()
    }
    if getattr(params, "granularity", "token") == "word":
        scores = aggregate_words(scores, encoding, params.word_reduction)
        extras = {name: aggregate_words(v, encoding, params.word_reduction) for name, v in extras.items()}
    explained.scores = scores
    explained.extras = extras if explanation.extras is not None else None
    real = ~encoding.special_mask
    checked = {"scores": scores} | {f"extras[{name!r}]": values for name, values in extras.items()}
    for what, values in checked.items():
        finite = torch.isfinite(values.detach()).cpu() | ~real
        bad = [encoding.example_ids[row] for row in range(len(examples)) if not finite[row].all()]
        if bad:
            explained.problems.append(("finite", f"non-finite {what} on real tokens of {bad}"))
    if explanation.seconds is not None and (problem := seconds_problem(explanation.seconds)):
        explained.problems.append(("seconds", problem))
    return explained
