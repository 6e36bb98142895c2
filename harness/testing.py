"""The conformance kit: what a plugin must do for the harness to trust its numbers, checked in one call
from the plugin author's own tests::

    from harness.testing import check_explainer, check_metric, check_model, check_dataset

    def test_my_explainer_conforms():
        check_explainer(MyExplainer, {"samples": 20})

Each ``check_*`` runs every check of its kind and raises ``ConformanceError`` listing every violation
(check name and what was found); ``*_findings`` return the same list instead, for tests that expect a
particular violation. Explainers and metrics are exercised on the kit's own classifier (``KitClassifier``:
a real, tiny attention-pooling model whose prediction hangs on one word, "good" or "bad") and data
(``kit_dataset``: single texts with that word as the human rationale, and text pairs); models and datasets
are exercised as the runner uses them. What is checked, by kind:

- every plugin: its metadata (name, family/direction/range for metrics, capabilities, a pydantic
  ``Params``), default parameters that construct, unknown parameters rejected;
- explainer: an (B, L) tensor or a valid ``Explanation`` per batch; one finite score per token the model
  read; stated ``seconds`` finite and ≥ 0 (or NaN); the encoding and targets it is handed left as they
  are; special tokens never removed in any input it feeds the model; the same scores for an example
  alone and within a padded batch (no dependence on batch composition); the same scores twice under one
  seed; pairs explained on both texts; the model it is handed left as it is (``harness.modelstate``);
- model: encodings aligned (tokens, offsets, word ids and segments one per real token; special tokens
  carry no word and no segment; offsets inside their own text, increasing; a word's tokens contiguous and
  in one text; word ids unique across the two texts of a pair, which come in order with a separator);
  probabilities that are finite and sum to one; logits from word embeddings equal to logits from ids
  (what gradient explainers rely on); predictions that do not depend on padding; every masking the
  removal metrics may ask for; the same model from the same seed; ``save``/``load`` round trips; every
  declared variant builds;
- dataset: what a run checks before computing anything (``harness.datachecks.dataset_problems``):
  two or more classes named; ids unique across splits; labels in range; texts non-empty; ``is_pair``
  agrees with the examples; rationale spans inside their text; a test split; text storable as UTF-8; the
  plugin's own ``check``; then the ``pairs`` capability agrees with ``is_pair``, and the same content on
  a second load;
- metric: one value per attribution, each finite or NaN, NaN only with a note saying why; finite values
  within the declared ``range`` (to ``harness.boundary.RANGE_TOLERANCE``); the attributions it is handed
  (its reference's included) and the model it is handed left as they are; the same values twice; for faithfulness and plausibility metrics, the
  explanation that ranks the deciding word first scores better, in the declared direction, than the one
  that ranks it last.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ValidationError

from harness.attribution import Attribution, attributions_from_batch
from harness.boundary import RANGE_TOLERANCE, attributions_copy
from harness.cache import Cache
from harness.classifier import Classifier, Encoding
from harness.data import Example, TextDataset
from harness.datachecks import dataset_problems
from harness.errors import PluginError
from harness.explaining import ExplainedBatch, check_target, encode, explain_batch
from harness.modelstate import ModelState
from harness.perturb import evaluate, replacement_id
from harness.plugin import (
    Dataset,
    Explainer,
    FitContext,
    Metric,
    MetricInput,
    MetricOutput,
    Model,
    Params,
    Plugin,
    metadata_problem,
)

__all__ = [
    "ConformanceError",
    "Finding",
    "KitClassifier",
    "check_dataset",
    "check_explainer",
    "check_metric",
    "check_model",
    "dataset_findings",
    "explainer_findings",
    "kit_attributions",
    "kit_dataset",
    "metric_findings",
    "model_findings",
]

TOLERANCE = 1e-5  # float32 models: an example alone and in a padded batch agree to this


@dataclass(frozen=True)
class Finding:
    """One violated contract: the check's name and what was found."""

    check: str
    message: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.message}"


class ConformanceError(AssertionError):
    """A plugin violates the contract; ``findings`` lists every violation."""

    def __init__(self, plugin: type[Plugin], findings: Sequence[Finding]):
        self.findings = list(findings)
        name = getattr(plugin, "name", plugin.__name__)
        lines = "\n".join(f"  {finding}" for finding in self.findings)
        super().__init__(f"{plugin.kind} '{name}' violates {len(self.findings)} contract(s):\n{lines}")


# -- the kit's data and classifier ----------------------------------------------------------------------

_SUBJECTS = ["the film", "this plot", "the acting", "our dinner", "the concert", "that wonderful book"]
_ENDINGS = ["overall", "in my opinion", "to everyone", "frankly", "believe me", "after all"]
_HYPOTHESES = ["someone liked it", "it was reviewed", "people talked afterwards"]


def kit_dataset(pairs: bool = False) -> TextDataset:
    """A tiny deterministic dataset (2 classes, 24 train, 8 validation, 8 test) whose label is said by
    one word, "good" (positive) or "bad" (negative), which is also each example's human rationale.
    With ``pairs``: the same sentences as premises, each with a neutral hypothesis (the word stays in
    the premise)."""
    examples = []
    for index in range(40):
        label = index % 2
        word = "good" if label else "bad"
        subject = _SUBJECTS[index % len(_SUBJECTS)]
        ending = _ENDINGS[(index // 2) % len(_ENDINGS)]
        text = f"{subject} we saw last week with some old friends was {word} {ending} ."
        start = text.index(f" {word} ") + 1
        examples.append(
            Example(
                id=f"kit{index:02d}",
                text=text,
                label=label,
                text_pair=_HYPOTHESES[index % len(_HYPOTHESES)] if pairs else None,
                rationale=((start, start + len(word)),),
            )
        )
    return TextDataset(
        name="kit-pairs" if pairs else "kit",
        labels=("negative", "positive"),
        train=tuple(examples[:24]),
        validation=tuple(examples[24:32]),
        test=tuple(examples[32:]),
        is_pair=pairs,
    )


_WORD = re.compile(r"\w+|[^\w\s]")
_SPECIALS = ("[PAD]", "[UNK]", "[MASK]", "[CLS]", "[SEP]")
PAD, UNK, MASK, CLS, SEP = range(len(_SPECIALS))
_PIECE = 4  # words longer than this are split into pieces of this many characters, as WordPiece would


def _pieces(text: str, segment: int, first_word: int) -> list[tuple[str, tuple[int, int], int, int]]:
    """(token, offsets, segment, word id) of a text: lower-cased words, long ones in ``##`` pieces."""
    result = []
    for number, match in enumerate(_WORD.finditer(text)):
        word, start = match.group().lower(), match.start()
        for offset in range(0, len(word), _PIECE):
            piece = word[offset : offset + _PIECE]
            token = piece if offset == 0 else f"##{piece}"
            result.append(
                (token, (start + offset, start + offset + len(piece)), segment, first_word + number)
            )
    return result


class KitClassifier(Classifier, torch.nn.Module):
    """A real, tiny classifier for conformance checks: [CLS] text [SEP] (pair [SEP]) in WordPiece-like
    tokens, 4-dimensional word embeddings, one attention head pooling them, a linear layer to 2 classes.

    Its weights are set, not trained: dimension 0 of "good" is +4 and of "bad" −4 (0 elsewhere),
    dimension 1 (what attention attends to) is 3 for both and 0 elsewhere, so the pooled vector and the
    prediction hang on that one word; the other dimensions are small seeded noise, so every token matters
    a little. ``attentions`` returns the pooling attention (one layer, one head)."""

    def __init__(self, dataset: TextDataset | None = None, seed: int = 0):
        torch.nn.Module.__init__(self)
        dataset = dataset or kit_dataset()
        vocabulary = list(_SPECIALS)
        for example in (*dataset.train, *dataset.validation, *dataset.test):
            for text in (example.text, example.text_pair or ""):
                vocabulary += [t for t, *_ in _pieces(text, 0, 0) if t not in vocabulary]
        self.vocabulary = vocabulary
        self.index = {token: i for i, token in enumerate(vocabulary)}
        self.labels = tuple(dataset.labels)
        self.device = torch.device("cpu")
        self.pad_token_id, self.unk_token_id, self.mask_token_id = PAD, UNK, MASK
        generator = torch.Generator().manual_seed(seed)
        weights = torch.zeros(len(vocabulary), 4)
        weights[:, 2:] = torch.randn(len(vocabulary), 2, generator=generator) * 0.3
        weights[PAD] = 0.0
        for word, sign in (("good", 1.0), ("bad", -1.0)):
            if word in self.index:
                weights[self.index[word], :2] = torch.tensor([4.0 * sign, 3.0])
        self.embedding = torch.nn.Embedding.from_pretrained(weights, freeze=True, padding_idx=PAD)
        self.query = torch.nn.Parameter(torch.tensor([0.0, 1.0, 0.2, -0.2]), requires_grad=False)
        self.linear = torch.nn.Linear(4, len(self.labels))
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[-1.0, 0.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.5]]))
            self.linear.bias.zero_()
        self.eval()

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self]

    def encode(self, examples: Sequence[Example]) -> Encoding:
        rows = []
        for example in examples:
            row = [("[CLS]", (0, 0), -1, None), *_pieces(example.text, 0, 0), ("[SEP]", (0, 0), -1, None)]
            if example.text_pair is not None:
                words = len(_WORD.findall(example.text))
                row += [*_pieces(example.text_pair, 1, words), ("[SEP]", (0, 0), -1, None)]
            rows.append(row)
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = torch.tensor([self.index.get(t, UNK) for t, *_ in row])
            attention_mask[r, : len(row)] = 1
        return Encoding(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=None,
            tokens=[[t for t, *_ in row] for row in rows],
            offsets=[[o for _, o, _, _ in row] for row in rows],
            word_ids=[[w for *_, w in row] for row in rows],
            segments=[[s for _, _, s, _ in row] for row in rows],
        )

    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(input_ids)

    def _attention(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        scores = embeddings @ self.query
        scores = scores.masked_fill(attention_mask == 0, float("-inf"))
        return torch.softmax(scores, dim=-1)

    def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        embeddings = self.embedding(input_ids) if inputs_embeds is None else inputs_embeds
        weights = self._attention(embeddings, attention_mask)
        pooled = (weights.unsqueeze(-1) * embeddings).sum(1)
        return self.linear(pooled)

    def attentions(self, encoding: Encoding) -> tuple[torch.Tensor, ...]:
        weights = self._attention(self.embedding(encoding.input_ids), encoding.attention_mask)
        length = weights.shape[1]
        rows = (
            weights[:, None, None, :].expand(-1, 1, length, length)
            * encoding.attention_mask[:, None, :, None]
        )
        return (rows,)


# -- shared helpers -------------------------------------------------------------------------------------


def _params(plugin: type[Plugin], params: dict | Params | None, findings: list[Finding]) -> Params | None:
    """The plugin's parameters from ``params``, after the checks every kind shares."""
    problem = metadata_problem(plugin)
    if problem:
        findings.append(Finding("metadata", problem))
    model = getattr(plugin, "Params", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    try:
        model.model_validate({"__not_a_parameter__": 1})
    except ValidationError:
        pass
    else:
        findings.append(
            Finding("params", "an unknown parameter was accepted: derive Params from harness.Params")
        )
    try:
        model()
    except ValidationError as error:
        if params is None:
            findings.append(
                Finding("params", f"the default parameters do not validate: {error.errors()[0]['msg']}")
            )
            return None
    if isinstance(params, BaseModel):
        return params
    try:
        return model.model_validate(params or {})
    except ValidationError as error:
        findings.append(Finding("params", f"the given parameters do not validate: {error}"))
        return None


def _run(findings: list[Finding], check: str, action: Callable[[], Any]) -> Any:
    """``action()``, or None with a finding when it raises."""
    try:
        return action()
    except Exception as error:  # noqa: BLE001 - the kit reports whatever a plugin raises
        findings.append(Finding(check, f"raised {type(error).__name__}: {error}"))
        return None


class _Recording(Classifier):
    """A classifier that forwards to another and keeps every ``input_ids`` batch it was asked about."""

    def __init__(self, inner: Classifier):
        self.inner = inner
        self.labels, self.device = inner.labels, inner.device
        self.pad_token_id, self.unk_token_id, self.mask_token_id = (
            inner.pad_token_id,
            inner.unk_token_id,
            inner.mask_token_id,
        )
        self.seen: list[torch.Tensor] = []

    def __getattr__(self, name: str):  # anything else a plugin reads (a tokenizer, a network...)
        return getattr(self.__dict__["inner"], name)

    def encode(self, examples):
        return self.inner.encode(examples)

    def input_embeddings(self, input_ids):
        return self.inner.input_embeddings(input_ids)

    def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
        if input_ids is not None:
            self.seen.append((input_ids.detach().cpu(), attention_mask.detach().cpu()))
        return self.inner.logits(
            attention_mask=attention_mask,
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            token_type_ids=token_type_ids,
        )

    def attentions(self, encoding):
        return self.inner.attentions(encoding)

    def output_positions(self, attention_mask):
        return self.inner.output_positions(attention_mask)

    def class_vectors(self):
        return self.inner.class_vectors()

    def hidden_layer(self, index):
        return self.inner.hidden_layer(index)

    def torch_modules(self):
        return self.inner.torch_modules()


# -- explainers -----------------------------------------------------------------------------------------


def _fitted(
    explainer: type[Explainer],
    params: Params,
    classifier: Classifier,
    dataset: TextDataset,
    seed: int,
    cache: Cache,
    teacher: Callable[[Sequence[Example], str], list[Attribution]] | None,
) -> Explainer:
    instance = explainer(params, seed=seed)
    context = FitContext(
        cache=cache, key=f"kit-{explainer.name}-{seed}", seed=seed, batch_size=8, teacher_attributions=teacher
    )
    instance.fit(classifier, dataset, context)
    return instance


def _explain(
    instance: Explainer, classifier: Classifier, examples: Sequence[Example], params: Params
) -> tuple[ExplainedBatch, list[str]]:
    """``examples`` explained as the runner explains them (``harness.explaining``), and the fields of the
    encoding (and ``targets``) the explainer changed in what it was handed."""
    explained = explain_batch(instance, classifier, examples, params)
    changed = _changed_fields(explained.encoding, explained.handed) + (
        [] if torch.equal(explained.targets, explained.handed_targets) else ["targets"]
    )
    return explained, changed


def _changed_fields(before, after) -> list[str]:
    """The fields of dataclass ``after`` that differ from ``before``'s (tensors compared by value)."""
    changed = []
    for field in dataclasses.fields(before):
        old, new = getattr(before, field.name), getattr(after, field.name)
        if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
            same = old.shape == new.shape and torch.equal(old, new.to(old.device))
        else:
            same = type(old) is type(new) and old == new
        if not same:
            changed.append(field.name)
    return changed


def _teacher_function(params: Params, classifier: Classifier, dataset: TextDataset, seed: int, cache: Cache):
    """For a student: the teacher's attributions, computed as the runner computes them."""
    spec = Explainer.teacher_of(params)
    if spec is None:
        return None
    from harness.registry import get_registry

    teacher_cls = get_registry().get("explainer", spec.name).cls
    teacher_params = teacher_cls.Params.model_validate(spec.params)

    def attributions(examples: Sequence[Example], split: str) -> list[Attribution]:
        teacher = _fitted(teacher_cls, teacher_params, classifier, dataset, seed, cache, None)
        check_target(teacher_params, classifier)
        result = []
        for start in range(0, len(examples), 8):
            explained = explain_batch(teacher, classifier, list(examples[start : start + 8]), teacher_params)
            if explained.problems:
                raise PluginError(f"teacher '{spec.name}' returned {explained.problems[0][1]}")
            result += explained.attributions(batch=start // 8)
        return result

    return attributions


def explainer_findings(
    explainer: type[Explainer],
    params: dict | Params | None = None,
    *,
    classifier: Classifier | None = None,
    dataset: TextDataset | None = None,
    pair_dataset: TextDataset | None = None,
    seed: int = 0,
) -> list[Finding]:
    """Every contract ``explainer`` (with ``params``) violates on ``classifier`` (the kit's by default)
    and the test examples of ``dataset`` and ``pair_dataset`` (the kit's by default)."""
    findings: list[Finding] = []
    parsed = _params(explainer, params, findings)
    if parsed is None:
        return findings
    dataset = dataset or kit_dataset()
    pair_dataset = pair_dataset or kit_dataset(pairs=True)
    classifier = classifier or KitClassifier(dataset)
    recording = _Recording(classifier)
    state = ModelState.of(classifier)
    with tempfile.TemporaryDirectory() as folder:
        cache = Cache(Path(folder))
        teacher = _teacher_function(parsed, classifier, dataset, seed, cache)
        instance = _run(
            findings, "fit", lambda: _fitted(explainer, parsed, recording, dataset, seed, cache, teacher)
        )
        if instance is None:
            return findings
        if "pairs" in explainer.requires_for(parsed):
            batches = [list(pair_dataset.test[:4])]
        else:  # every explainer runs on pairs too: the harness reads them (one kind per batch, as it does)
            batches = [list(dataset.test[:4]), list(pair_dataset.test[:3])]
        again = _run(
            findings,
            "deterministic",
            lambda: _fitted(explainer, parsed, recording, dataset, seed, cache, teacher),
        )
        for batch in batches:
            findings += _batch_findings(instance, again, recording, _longest_first(batch), parsed)
    findings += _model_unchanged_findings(state, classifier, "explainer")
    return _first_per_check(findings)


def _model_unchanged_findings(state: ModelState, classifier: Classifier, kind: str) -> list[Finding]:
    """A finding if the plugin modified the classifier it was handed (``harness.modelstate``): the
    harness fails its cells, since every later cell on that model would read the changed one."""
    change = state.change(classifier)
    if change is None:
        return []
    return [
        Finding(
            "model-unchanged",
            f"the {kind} modified the model it was handed: {change}; the harness fails its cells (every "
            "later cell on the model would read the changed one); work on a copy",
        )
    ]


def _batch_findings(
    instance: Explainer, again: Explainer | None, recording: _Recording, batch: list[Example], parsed: Params
) -> list[Finding]:
    findings: list[Finding] = []
    recording.seen.clear()
    try:
        outcome = _explain(instance, recording, batch, parsed)
    except PluginError as error:
        if batch[0].text_pair is not None:
            return []  # an explainer may decline pairs: its cells on pairs then fail with its message
        return [Finding("explain", f"raised PluginError: {error}")]
    except Exception as error:  # noqa: BLE001 - the kit reports whatever a plugin raises
        return [Finding("explain", f"raised {type(error).__name__}: {error}")]
    explained, changed = outcome
    encoding = explained.encoding
    if changed:
        findings.append(
            Finding(
                "read-only",
                f"explain changed the {', '.join(changed)} it was handed: the harness hands each explainer a "
                "copy and stores the original, so scores computed on a changed input explain another one; "
                "change a clone",
            )
        )
    for check, what in explained.problems:  # as the runner finds them, on the scores it stores
        findings.append(Finding(check, what if check == "finite" else f"explain returned {what}"))
    if explained.scores is None:  # wrong shapes: nothing further to check
        return findings
    real = ~encoding.special_mask
    scores = explained.scores.detach().cpu().double()
    findings += _specials_kept(recording.seen, encoding)
    # The same scores alone as in a padded batch.
    for row, example in enumerate(batch):
        alone = _run(
            findings,
            "batch-independent",
            lambda example=example: _explain(instance, recording, [example], parsed),
        )
        if alone is None or alone[0].scores is None:
            break
        length = len(encoding.tokens[row])
        one = alone[0].scores.detach().cpu().double()[0, :length]
        mask = real[row, :length]
        if not torch.allclose(
            one[mask], scores[row, :length][mask], rtol=1e-4, atol=TOLERANCE, equal_nan=True
        ):
            difference = float((one[mask] - scores[row, :length][mask]).abs().max())
            findings.append(
                Finding(
                    "batch-independent",
                    f"example {example.id} gets other scores alone than in a padded batch (max difference "
                    f"{difference:.3g}): mask padding, and seed per example (harness.example_rng), not per batch",
                )
            )
            break
    # The same scores again under the same seed, from a fresh instance.
    if again is not None:
        repeated = _run(findings, "deterministic", lambda: _explain(again, recording, batch, parsed))
        if repeated is not None and repeated[0].scores is not None:
            second = repeated[0].scores.detach().cpu().double()
            if not torch.allclose(second[real], scores[real], rtol=1e-6, atol=1e-9, equal_nan=True):
                findings.append(
                    Finding(
                        "deterministic",
                        "two runs under one seed give other scores: draw randomness from self.seed",
                    )
                )
    return findings


def _first_per_check(findings: list[Finding]) -> list[Finding]:
    """One finding per check (the single texts' before the pairs'): a violation shows once."""
    first: dict[str, Finding] = {}
    for finding in findings:
        first.setdefault(finding.check, finding)
    return list(first.values())


def _specials_kept(seen: list[tuple[torch.Tensor, torch.Tensor]], encoding: Encoding) -> list[Finding]:
    """Every input the explainer fed the model keeps [CLS] first and one or two [SEP]s, as the encoded
    examples do: removal (any masking) never touches a special token."""
    special_ids = {
        int(encoding.input_ids[r, p])
        for r, segs in enumerate(encoding.segments)
        for p, s in enumerate(segs)
        if s < 0
    }
    counts = {
        tuple(sorted(int(i) for i in encoding.input_ids[r, : len(segs)] if int(i) in special_ids))
        for r, segs in enumerate(encoding.segments)
    }
    for input_ids, attention_mask in seen:
        for row, mask in zip(input_ids, attention_mask, strict=True):
            ids = row[mask.bool()].tolist()
            kept = tuple(sorted(i for i in ids if i in special_ids))
            if ids and kept not in counts:
                return [
                    Finding(
                        "specials-kept",
                        "an input fed to the model lost or gained a special token ([CLS]/[SEP]): "
                        "remove only positions where Encoding.segments >= 0 (harness.removable_positions)",
                    )
                ]
    return []


def check_explainer(explainer: type[Explainer], params: dict | Params | None = None, **kwargs: Any) -> None:
    """Raise ``ConformanceError`` listing every contract ``explainer`` violates (see
    ``explainer_findings`` for the arguments)."""
    findings = explainer_findings(explainer, params, **kwargs)
    if findings:
        raise ConformanceError(explainer, findings)


# -- models ---------------------------------------------------------------------------------------------


def _encoding_findings(encoding: Encoding, examples: Sequence[Example]) -> list[Finding]:
    findings: list[Finding] = []
    for row, example in enumerate(examples):
        where = f"example {example.id}"
        tokens, offsets, words, segments = (
            encoding.tokens[row], encoding.offsets[row], encoding.word_ids[row], encoding.segments[row],
        )  # fmt: skip
        lengths = {
            len(tokens),
            len(offsets),
            len(words),
            len(segments),
            int(encoding.attention_mask[row].sum()),
        }
        if len(lengths) != 1:
            findings.append(
                Finding(
                    "alignment",
                    f"{where}: tokens, offsets, word_ids, segments and attention_mask disagree in length",
                )
            )
            continue
        texts = {0: example.text, 1: example.text_pair}
        last_start = {0: -1, 1: -1}
        seen_words: dict[int, int] = {}
        previous_word = None
        on_text: dict[int, bool] = {}  # per word: whether one of its tokens covers some of the text
        broken = True  # until the loop ends without finding anything
        for position, (token, (start, end), word, segment) in enumerate(
            zip(tokens, offsets, words, segments, strict=True)
        ):
            if segment not in (-1, 0, 1) or (segment == 1 and example.text_pair is None):
                findings.append(
                    Finding("segments", f"{where}: token {position} ({token!r}) has segment {segment}")
                )
                break
            if (segment < 0) != (word is None):
                findings.append(
                    Finding("specials", f"{where}: token {position} ({token!r}) has segment {segment} and word id {word}: "
                            "special tokens (segment -1) and only they have no word")
                )  # fmt: skip
                break
            if segment < 0:
                previous_word = None
                continue
            text = texts[segment]
            if not (0 <= start <= end <= len(text)):
                findings.append(
                    Finding(
                        "offsets",
                        f"{where}: token {position} ({token!r}) has offsets {(start, end)} outside its text",
                    )
                )
                break
            # A sub-token may cover only a space (byte-level BPE's lone "Ġ": an empty span once trimmed), as
            # long as its word has a token on text.
            on_text[word] = on_text.get(word, False) or bool(text[start:end].strip())
            if start < last_start[segment]:
                findings.append(
                    Finding(
                        "offsets", f"{where}: token {position} ({token!r}) starts before the previous token"
                    )
                )
                break
            last_start[segment] = start
            if word in seen_words and (seen_words[word] != segment or previous_word != word):
                findings.append(
                    Finding(
                        "word-ids", f"{where}: word {word} is split, or shared by the two texts of a pair"
                    )
                )
                break
            seen_words[word] = segment
            previous_word = word
        else:
            broken = False
            nowhere = [word for word, covered in on_text.items() if not covered]
            if nowhere:
                findings.append(
                    Finding(
                        "offsets",
                        f"{where}: word {nowhere[0]} has no token whose offsets cover any of its text",
                    )
                )
                broken = True
        if example.text_pair is not None and not broken:
            real = [s for s in segments if s >= 0]
            if 1 not in real or real != sorted(real):
                findings.append(
                    Finding("pairs", f"{where}: a pair must encode its first text, then its second")
                )
            else:
                boundary = segments.index(1)
                if all(s >= 0 for s in segments[:boundary][-1:]):
                    findings.append(
                        Finding("pairs", f"{where}: no separator between the two texts of the pair")
                    )
    return findings


def model_findings(
    model: type[Model],
    params: dict | Params | None = None,
    *,
    dataset: TextDataset | None = None,
    pair_dataset: TextDataset | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> list[Finding]:
    """Every contract ``model`` (with ``params``) violates, built on ``dataset`` (the kit's by default)
    and encoding its test examples and those of ``pair_dataset``."""
    findings: list[Finding] = []
    parsed = _params(model, params, findings)
    if parsed is None:
        return findings
    dataset = dataset or kit_dataset()
    pair_dataset = pair_dataset or kit_dataset(pairs=True)
    torch_device = torch.device(device)
    classifier = _run(findings, "build", lambda: model(parsed).build(dataset, seed=seed, device=torch_device))
    if classifier is None:
        return findings
    if not isinstance(classifier, Classifier):
        return [
            *findings,
            Finding("build", f"build returned {type(classifier).__name__}, not a harness.Classifier"),
        ]
    if len(classifier.labels) != len(dataset.labels):
        findings.append(
            Finding("labels", f"{len(classifier.labels)} classes, the dataset has {len(dataset.labels)}")
        )
    batches = [_longest_first(dataset.test[:4]), _longest_first(pair_dataset.test[:3])]
    checked = [_classifier_findings(classifier, examples) for examples in batches]
    findings = _first_per_check(
        findings + [finding for batch_findings, _ in checked for finding in batch_findings]
    )
    examples, log_probabilities = batches[0], checked[0][1]
    if log_probabilities is None:
        return findings
    if model.trainable:
        again = _run(
            findings, "deterministic", lambda: model(parsed).build(dataset, seed=seed, device=torch_device)
        )
        if again is not None:
            with torch.no_grad():
                repeated = again.log_probabilities(encode(again, examples))
            if not torch.allclose(repeated, log_probabilities, atol=TOLERANCE):
                findings.append(
                    Finding(
                        "deterministic",
                        "two builds from one seed predict differently: seed every random draw",
                    )
                )
    findings += _save_load_findings(
        model, parsed, classifier, dataset, examples, log_probabilities, torch_device
    )
    for variant in model.variants:
        name = "init:2" if variant == "init:N" else variant
        if name != "default":
            built = _run(
                findings,
                "variants",
                lambda name=name: model(parsed).build(dataset, seed=seed, device=torch_device, variant=name),
            )
            if built is not None and not isinstance(built, Classifier):
                findings.append(Finding("variants", f"variant {name} is not a harness.Classifier"))
    return findings


def _classifier_findings(
    classifier: Classifier, examples: list[Example]
) -> tuple[list[Finding], torch.Tensor | None]:
    """The contracts of one encoded batch: alignment, probabilities, embeddings, padding, removal."""
    findings: list[Finding] = []
    encoding = _run(findings, "encode", lambda: encode(classifier, examples))
    if encoding is None:
        return findings, None
    findings += _encoding_findings(encoding, examples)
    with torch.no_grad():
        log_probabilities = _run(findings, "logits", lambda: classifier.log_probabilities(encoding))
        if log_probabilities is None:
            return findings, None
        if (
            tuple(log_probabilities.shape) != (len(examples), len(classifier.labels))
            or not torch.isfinite(log_probabilities).all()
        ):
            findings.append(
                Finding(
                    "logits", f"log-probabilities of shape {tuple(log_probabilities.shape)} or not finite"
                )
            )
            return findings, None
        if not torch.allclose(
            log_probabilities.exp().sum(-1), torch.ones(len(examples), dtype=torch.float64), atol=1e-6
        ):
            findings.append(Finding("logits", "probabilities do not sum to one"))
        try:
            embedded = classifier.logits(
                inputs_embeds=classifier.input_embeddings(encoding.input_ids),
                attention_mask=encoding.attention_mask,
                token_type_ids=encoding.token_type_ids,
            )
        except PluginError:
            pass  # a model without word embeddings: gradient explainers fail their cells, with its message
        except Exception as error:  # noqa: BLE001
            findings.append(
                Finding("embeddings", f"logits from input_embeddings raised {type(error).__name__}: {error}")
            )
        else:
            direct = classifier.logits(
                input_ids=encoding.input_ids,
                attention_mask=encoding.attention_mask,
                token_type_ids=encoding.token_type_ids,
            )
            if not torch.allclose(embedded.double(), direct.double(), atol=1e-4, rtol=1e-4):
                findings.append(
                    Finding("embeddings", "logits from input_embeddings(ids) differ from logits from ids")
                )
        for row, example in enumerate(examples):
            alone = classifier.log_probabilities(encode(classifier, [example]))[0]
            if not torch.allclose(alone, log_probabilities[row], atol=TOLERANCE):
                findings.append(
                    Finding(
                        "batch-independent",
                        f"example {example.id} is predicted otherwise alone than in a padded batch: mask padding",
                    )
                )
                break
        findings += _removal_findings(classifier, encoding, log_probabilities)
    return findings, log_probabilities


LOAD_CHECKS_VERSION = "1"  # bump when load_findings checks more or otherwise


def load_findings(classifier: Classifier, examples: Sequence[Example]) -> list[Finding]:
    """The cheap checks a run makes of a model it loads (``Model.check_on_load``), on a few of the
    dataset's own examples (the longest first, so that the others are padded): encodings aligned with the
    text, probabilities that sum to one, logits from word embeddings equal to logits from ids (what
    gradient explainers rely on), the same prediction for an example alone and in a padded batch, and
    every masking the tokenizer supports. The first finding of each check."""
    findings, _ = _classifier_findings(classifier, _longest_first(examples))
    return _first_per_check(findings)


def _longest_first(examples) -> list[Example]:
    """A long example first, so that the others are padded."""
    return sorted(examples, key=lambda e: -len(e.text) - len(e.text_pair or ""))


def _removal_findings(
    classifier: Classifier, encoding: Encoding, log_probabilities: torch.Tensor
) -> list[Finding]:
    """Every masking the removal metrics may ask for runs: removing the first real token of each example
    gives finite probabilities, removing nothing gives the model's own."""
    findings: list[Finding] = []
    attributions = attributions_from_batch(
        encoding.example_ids, encoding, torch.zeros(encoding.input_ids.shape), log_probabilities.argmax(-1), log_probabilities, 0.0
    )  # fmt: skip
    for masking in ("mask", "unk", "pad", "delete"):
        try:
            replacement_id(classifier, masking)
        except PluginError:
            continue  # the tokenizer has no such token: metrics say so in their cells
        removals = []
        for attribution in attributions:
            rows = np.zeros((2, len(attribution.input_ids)), dtype=bool)
            rows[1, attribution.removable[:1]] = True
            removals.append(rows)
        try:
            results = evaluate(classifier, attributions, removals, masking=masking, batch_size=4)
        except Exception as error:  # noqa: BLE001
            findings.append(Finding("removal", f"masking '{masking}' raised {type(error).__name__}: {error}"))
            continue
        for attribution, result in zip(attributions, results, strict=True):
            if not np.isfinite(result).all() or not np.allclose(
                result[0], attribution.log_probabilities, atol=1e-4
            ):
                findings.append(
                    Finding(
                        "removal",
                        f"masking '{masking}' on {attribution.example_id}: non-finite, or the unperturbed input predicted otherwise",
                    )
                )
                break
    return findings


def _save_load_findings(
    model, params, classifier, dataset, examples, log_probabilities, device
) -> list[Finding]:
    instance = model(params)
    with tempfile.TemporaryDirectory() as folder:
        try:
            instance.save(classifier, Path(folder))
        except NotImplementedError:
            if model.trainable:
                return [
                    Finding(
                        "save-load", "a trainable model must implement save and load (the runner caches it)"
                    )
                ]
            return []
        except Exception as error:  # noqa: BLE001
            return [Finding("save-load", f"save raised {type(error).__name__}: {error}")]
        loaded = _run(findings := [], "save-load", lambda: instance.load(Path(folder), dataset, device))
        if loaded is None:
            return findings
        with torch.no_grad():
            again = loaded.log_probabilities(encode(loaded, examples))
        if not torch.allclose(again, log_probabilities, atol=TOLERANCE):
            return [Finding("save-load", "the loaded model predicts otherwise than the saved one")]
    return []


def check_model(model: type[Model], params: dict | Params | None = None, **kwargs: Any) -> None:
    """Raise ``ConformanceError`` listing every contract ``model`` violates (see ``model_findings``)."""
    findings = model_findings(model, params, **kwargs)
    if findings:
        raise ConformanceError(model, findings)


# -- datasets -------------------------------------------------------------------------------------------


def dataset_findings(dataset: type[Dataset], params: dict | Params | None = None) -> list[Finding]:
    """Every contract ``dataset`` (with ``params``) violates, loaded twice."""
    findings: list[Finding] = []
    parsed = _params(dataset, params, findings)
    if parsed is None:
        return findings
    instance = dataset(parsed)
    loaded = _run(findings, "load", instance.load)
    if loaded is None:
        return findings
    if not isinstance(loaded, TextDataset):
        return [
            *findings,
            Finding("load", f"load returned {type(loaded).__name__}, not a harness.TextDataset"),
        ]
    # the checks a run makes on every dataset before computing anything, and the plugin's own
    findings += [Finding(problem.check, problem.message) for problem in dataset_problems(instance, loaded)]
    if ("pairs" in dataset.provides_for(parsed)) != loaded.is_pair:
        findings.append(
            Finding(
                "pairs",
                f"provides 'pairs' is {'pairs' in dataset.provides_for(parsed)} but is_pair is {loaded.is_pair}",
            )
        )
    again = _run(findings, "deterministic", lambda: dataset(parsed).load())
    fingerprinted = not any(finding.check == "encoding" for finding in findings)
    if again is not None and fingerprinted and again.fingerprint != loaded.fingerprint:
        findings.append(
            Finding("deterministic", "two loads give other content (order, splits or texts): seed the split")
        )
    return findings


def check_dataset(dataset: type[Dataset], params: dict | Params | None = None) -> None:
    """Raise ``ConformanceError`` listing every contract ``dataset`` violates."""
    findings = dataset_findings(dataset, params)
    if findings:
        raise ConformanceError(dataset, findings)


# -- metrics --------------------------------------------------------------------------------------------


def kit_attributions(
    classifier: Classifier, examples: Sequence[Example], order: str = "oracle", seconds: float = 0.01
) -> list[Attribution]:
    """Attributions of ``examples`` on ``classifier`` made by hand: ``oracle`` scores each example's
    rationale tokens (the deciding word) highest and the rest by position, ``anti-oracle`` the same
    reversed, ``random`` seeded noise per example."""
    encoding = encode(classifier, examples)
    with torch.no_grad():
        log_probabilities = classifier.log_probabilities(encoding)
    scores = torch.zeros(encoding.input_ids.shape, dtype=torch.float64)
    for row, example in enumerate(examples):
        spans = example.rationale or ()
        for position, ((start, end), segment) in enumerate(
            zip(encoding.offsets[row], encoding.segments[row], strict=True)
        ):
            if segment < 0:
                continue
            inside = segment == 0 and any(start < e and s < end for s, e in spans)
            value = (10.0 if inside else 0.0) + 1.0 / (position + 1)
            scores[row, position] = value
        if order == "anti-oracle":  # the same scores in reverse order
            real = (
                torch.tensor(encoding.segments[row] + [-1] * (scores.shape[1] - len(encoding.segments[row])))
                >= 0
            )
            values = scores[row][real]
            scores[row][real] = values.max() + values.min() - values
        elif order == "random":
            generator = torch.Generator().manual_seed(row)
            scores[row] = torch.rand(scores.shape[1], generator=generator, dtype=torch.float64)
    return attributions_from_batch(
        encoding.example_ids,
        encoding,
        scores,
        log_probabilities.argmax(-1),
        log_probabilities,
        seconds,
        batch=0,
    )


def metric_findings(
    metric: type[Metric],
    params: dict | Params | None = None,
    *,
    classifier: Classifier | None = None,
    dataset: TextDataset | None = None,
) -> list[Finding]:
    """Every contract ``metric`` (with ``params``) violates on hand-made attributions (``kit_attributions``)
    of the test examples of ``dataset`` (the kit's, or its pairs when the metric requires pairs) on
    ``classifier`` (the kit's by default). A metric comparing two cells gets the random explanation as
    its reference."""
    findings: list[Finding] = []
    parsed = _params(metric, params, findings)
    if parsed is None or any(finding.check == "metadata" for finding in findings):
        return findings  # the registry refuses such a metric: its values could not be checked or stored
    dataset = dataset or kit_dataset(pairs="pairs" in metric.requires_for(parsed))
    classifier = classifier or KitClassifier(dataset)
    state = ModelState.of(classifier)
    examples = list(dataset.test)

    def data(order: str) -> MetricInput:
        attributions = kit_attributions(classifier, examples, order)
        reference = None
        if metric.compares is not None:
            reference = MetricInput(
                kit_attributions(classifier, examples, "random", seconds=0.02),
                {e.id: e for e in examples}, dataset, lambda: classifier, batch_size=8,
            )  # fmt: skip
        return MetricInput(
            attributions, {e.id: e for e in examples}, dataset, lambda: classifier, 8, reference
        )

    instance = metric(parsed)

    def compute(order: str) -> MetricOutput | None:
        given = data(order)
        handed = [*given.attributions, *(given.reference.attributions if given.reference else ())]
        pristine = attributions_copy(handed)
        output = _run(findings, "compute", lambda: instance.compute(given))
        now = [*given.attributions, *(given.reference.attributions if given.reference else ())]
        if now != pristine and not any(finding.check == "read-only" for finding in findings):
            changed = next(
                (b.example_id for a, b in zip(now, pristine, strict=False) if a != b), "their list"
            )
            findings.append(
                Finding(
                    "read-only",
                    f"compute changed the attributions it was handed ({changed}): the harness hands each "
                    "metric a copy, so a metric reading what it changed scores another explanation; change a copy",
                )
            )
        if output is None:
            return None
        return output if isinstance(output, MetricOutput) else MetricOutput(list(output))

    first = compute("oracle")
    findings += _model_unchanged_findings(state, classifier, "metric")
    if first is None or findings and findings[-1].check == "model-unchanged":
        return findings
    text = next((v for v in first.values if isinstance(v, str | bytes | bytearray)), None)
    if text is not None:  # float() would parse "0.5": the runner refuses text, so does the kit
        return [*findings, Finding("values", f"a value given as text ({text!r}): return numbers")]
    values = np.asarray(first.values, dtype=np.float64)
    if len(values) != len(examples):
        return [
            *findings,
            Finding("values", f"{len(values)} values for {len(examples)} attributions: one per attribution"),
        ]
    low, high = metric.range
    finite = values[np.isfinite(values)]
    if np.isinf(values).any():
        findings.append(Finding("values", "an infinite value: undefined is NaN, with a note saying why"))
    if len(finite) and (
        finite.min() < low - RANGE_TOLERANCE * max(1.0, abs(low))
        or finite.max() > high + RANGE_TOLERANCE * max(1.0, abs(high))
    ):
        findings.append(
            Finding(
                "range",
                f"values from {finite.min():.6g} to {finite.max():.6g} outside the declared range {metric.range}",
            )
        )
    if np.isnan(values).any() and not first.notes:
        findings.append(
            Finding(
                "undefined",
                "NaN values without a note: MetricOutput(notes=[...]) says why they are undefined",
            )
        )
    second = compute("oracle")
    if second is not None and not np.array_equal(
        np.asarray(second.values, dtype=np.float64), values, equal_nan=True
    ):
        findings.append(
            Finding("deterministic", "two computations of one input differ: seed what the metric draws")
        )
    if metric.compares is None and getattr(metric, "family", None) in ("faithfulness", "plausibility"):
        worse = compute("anti-oracle")
        if worse is not None:
            good, bad = (
                np.nanmean(values) if len(finite) else math.nan,
                np.nanmean(np.asarray(worse.values, dtype=np.float64)),
            )
            direction = metric.direction_for(parsed)
            if (
                direction in ("higher", "lower")
                and math.isfinite(good)
                and math.isfinite(bad)
                and not (good > bad if direction == "higher" else good < bad)
            ):
                findings.append(
                    Finding("direction", f"the explanation ranking the deciding word first scores {good:.4g}, the one ranking it "
                            f"last {bad:.4g}: not better in the declared direction '{direction}'")
                )  # fmt: skip
    return findings


def check_metric(metric: type[Metric], params: dict | Params | None = None, **kwargs: Any) -> None:
    """Raise ``ConformanceError`` listing every contract ``metric`` violates (see ``metric_findings``)."""
    findings = metric_findings(metric, params, **kwargs)
    if findings:
        raise ConformanceError(metric, findings)
