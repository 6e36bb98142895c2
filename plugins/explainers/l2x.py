"""L2X: an amortised explainer that learns to select k words (Chen, Song, Wainwright & Jordan 2018)."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field, PositiveInt

from harness import (
    Classifier,
    Encoding,
    Example,
    Explainer,
    ExplainerParams,
    Explanation,
    FitContext,
    PluginError,
    TextDataset,
    derive_seed,
    word_units,
)
from plugins.explainers._l2x_networks import (
    Approximate,
    Approximator,
    L2XBatch,
    Selector,
    token_masks,
    token_values,
    top_k_words,
    train_l2x,
    word_logits,
)

# the capability of a model reading a floating-point attention mask as token weights, 0 deleting the token
# (minilm-head provides it); the model approximator passes its masks that way
TOKEN_WEIGHTS = "token-weights"

PAPER = (
    "Chen, Song, Wainwright & Jordan 2018, Learning to Explain: An Information-Theoretic Perspective on "
    "Model Interpretation (L2X), §3-§4; as a text-pair baseline in Chen et al. 2021 (GMASK), §4"
)


class L2XParams(ExplainerParams):
    target: Literal["predicted"] = Field(
        "predicted",
        description="class explained: always the model's prediction (L2X learns to keep the prediction)",
    )
    k: PositiveInt = Field(10, description="words selected per example (GMASK's evaluation and L2X: 10)")
    temperature: float = Field(
        0.5, gt=0, description="temperature τ of the Concrete relaxation of the k-subset (L2X: 0.5)"
    )
    approximator: Literal["model", "network"] = Field(
        "model",
        description="q(y | x_S): the black box itself on the masked embeddings (frozen), or a small network "
        "trained jointly with the selector (the paper's)",
    )
    train_documents: PositiveInt | None = Field(
        500,
        description="training budget: the first N documents of the train split, labelled by the model's "
        "predictions (null: the whole split; the paper: the whole split)",
    )
    validation_documents: PositiveInt | None = Field(
        100, description="the first N documents of the validation split, for early stopping (null: all)"
    )
    max_epochs: PositiveInt = Field(10, description="training budget: at most this many epochs (L2X: 5)")
    patience: PositiveInt = Field(
        3, description="stop after this many epochs without a better validation accuracy (ties: loss)"
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate")
    straight_through: bool = Field(
        False,
        description="straight-through subsets: the hard subset (each Concrete draw's argmax, combined by the "
        "max) in the forward pass, so that every word left out is deleted, with the relaxed subset's "
        "gradient (as GMASK's reference code samples its masks); false: the relaxed subset itself (L2X §4)",
    )
    train_batch_size: PositiveInt = Field(32, description="documents per training step (L2X: 40)")
    selector_hidden: PositiveInt = Field(
        100, description="selector width: filters per convolution (L2X: 100)"
    )
    approximator_hidden: PositiveInt = Field(
        250, description="hidden units of the approximator network (approximator: network; L2X: 250)"
    )
    init: PositiveInt = Field(1, description="which initialisation of the networks (grid over it to average)")


class L2X(Explainer):
    """L2X: a selector network trained to pick the k words that keep the model's prediction; one forward pass.

    Training (Chen et al. 2018, §3-§4), once per model and dataset in ``fit``: the model predicts ŷ for
    the first ``train_documents`` of the train split (in batches, no gradients). A selector network maps
    the input to one logit per word; k words are sampled with the continuous subset relaxation of §4
    (k independent Concrete draws over the words at temperature τ, combined by an elementwise max, giving
    a mask V ∈ [0, 1] per word, or with ``straight_through`` the hard subset in the forward pass and V's
    gradient); the masked input x̃ = V ⊙ x (word embeddings times their word's mask, special tokens always
    kept at 1) goes to the variational approximator q(y | x_S), trained jointly to predict ŷ
    (cross-entropy: the variational lower bound of I(X_S; Y), Eq. 6). Each epoch is validated
    on the discrete selection (each example's top k words): the accuracy of q on them against ŷ, ties
    broken by cross-entropy; the best epoch is kept (early stopping, ``patience``). The selector, q and
    a report are cached content-addressed, so a second run reuses them; ``fit_report`` gives training and
    validation documents, epochs, the best epoch and its validation accuracy, and seconds (the whole fit,
    the model's predictions included; the training cost is reported apart from per-document runtime).

    Explaining is one selector pass: each word's score is the selector's logit (higher: selected first);
    ``extras["selected"]`` is 1 on the tokens of the k selected words. Masks are per word: a word's
    sub-tokens share one logit (the mean of their token logits) and one mask; words never span the two
    texts of a pair; specials and padding are never masked.

    Selector: a small version of L2X's text selector over the model's frozen input word embeddings
    (projected to ``selector_hidden`` dims, plus a learned segment embedding: special / first text /
    second text); a width-3 convolution feeding a global branch (max over each text separately, then a
    dense layer) and a local branch (two width-3 convolutions); the global vector is tiled, concatenated
    with the local one, and two width-1 convolutions give token logits. A pair is read whole, so the
    selection in one text can depend on the other.

    ``approximator``: ``model`` (default) uses the black box itself, frozen, as q: the selector learns
    which k words make the model itself keep its prediction, so the explanation is about the model
    explained and its faithfulness is what the removal metrics measure. The model reads V twice: as the
    multiplier of the word embeddings and as the tokens' weights in its attention mask (the model's
    ``token-weights``, which this approximator requires), so that a word of mask 0, every word left out
    of the discrete selection validated on, is deleted, as the removal metrics delete it (before version
    2 the model still attended to and pooled a zeroed word). ``network`` is the paper's: a
    separate network (per text, the sum of the masked embeddings over k, u and v, combined as [u, v,
    u ⊙ v, |u − v|], a dense layer of ``approximator_hidden`` ReLU units, class logits), trained jointly;
    it rewards any selection from which that network can read ŷ: words that merely correlate with ŷ in
    the data, or a code in the choice itself (on the kit, trained long without early stopping, it learned
    for some seeds to select "good" where it decides and an irrelevant word otherwise, "not good" meaning
    negative). That makes it the weaker explanation of a given model, but it is the one GMASK compared.
    With ``network`` training is cheap (no model passes); with ``model`` every step is a forward and
    backward pass through the model (MiniLM-L6 on 2 CPU cores: about 60 pairs a second, so about 10 s an
    epoch of 500 pairs). Explaining costs one selector pass either way (Chen et al. 2021, Table 7: L2X is
    the fastest explainer per example, 0.01-0.02 s, and the costliest to train).

    Defaults: k 10, τ 0.5, batches of 32 (L2X's IMDB code: k 10, τ 0.5, batches of 40). Deviations from the
    paper: training on the first 500 training documents for at most 10 epochs with early stopping, not the
    whole training set for 5 epochs (a CPU budget); Adam instead of RMSprop; no dropout (randomness only
    from the seed); the selector and q read the model's frozen word embeddings instead of learning their
    own embedding tables; token logits pooled per word (the paper's texts are words of a word vocabulary,
    one text each); pairs read whole with segment embeddings, and the approximator network reads a pair
    as two pooled texts (Chen et al. 2021 do not say how they fed pairs to L2X); the default approximator is the model itself
    (above); the ``target`` is always the model's prediction, which is what L2X is trained to keep.
    """

    name: ClassVar[str] = "l2x"
    version: ClassVar[str] = "2"  # 2: with the model as approximator, a mask of 0 deletes the word
    Params = L2XParams
    paper: ClassVar[str] = PAPER

    @classmethod
    def requires_for(cls, params: L2XParams) -> frozenset[str]:
        """``token-weights`` with the model as its approximator (it reads the masks as token weights);
        nothing with the approximator network."""
        return frozenset({TOKEN_WEIGHTS}) if params.approximator == "model" else frozenset()

    def __init__(self, params: L2XParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        self.selector: Selector | None = None
        self.report: dict = {}

    # -- training -------------------------------------------------------------------------------------
    def fit(self, classifier: Classifier, dataset: TextDataset, context: FitContext | None = None) -> None:
        def read(directory: Path) -> tuple[dict, Selector]:
            report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
            selector = self._selector(classifier)
            state = torch.load(directory / "selector.pt", map_location=classifier.device, weights_only=True)
            selector.load_state_dict(state)
            return report, selector

        if context is None:  # outside the runner: train without a cache
            with tempfile.TemporaryDirectory() as folder:
                self._train(classifier, dataset, self.seed, lambda *_: None, Path(folder))
                self.report, self.selector = read(Path(folder))
        else:
            self.report, self.selector = context.cached(
                lambda path: self._train(classifier, dataset, context.seed, context.progress, path), read
            )
        self.selector.to(classifier.device).eval()

    def fit_report(self) -> dict:
        return self.report

    @staticmethod
    def _embedding_dim(classifier: Classifier) -> int:
        ids = torch.tensor([[classifier.pad_token_id]], device=classifier.device)
        return classifier.input_embeddings(ids).shape[-1]

    def _selector(self, classifier: Classifier) -> Selector:
        return Selector(self._embedding_dim(classifier), self.params.selector_hidden)

    def _train(
        self,
        classifier: Classifier,
        dataset: TextDataset,
        seed: int,
        progress: Callable[[str, int, int], None],
        directory: Path,
    ) -> None:
        start = time.perf_counter()
        params = self.params
        train = list(dataset.train[: params.train_documents])
        validation = list(dataset.validation[: params.validation_documents])
        if not validation:  # no validation split: hold out the last tenth of the training documents
            cut = max(1, len(train) // 10)
            train, validation = train[:-cut], train[-cut:]
        if not train:
            raise PluginError(f"l2x needs training documents; dataset '{dataset.name}' has too few")
        progress(f"model predictions on {len(train)} train documents", 0, len(train))
        train_batches = self._batches(classifier, train)
        validation_batches = self._batches(classifier, validation)
        with torch.random.fork_rng(devices=[]):  # initialise from the seed, leave the global stream alone
            torch.manual_seed(derive_seed(seed, f"l2x-init:{params.init}"))
            selector = self._selector(classifier)
            approximator = None
            if params.approximator == "network":
                approximator = Approximator(
                    self._embedding_dim(classifier), params.approximator_hidden,
                    len(classifier.labels), params.k,
                )  # fmt: skip
        selector.to(classifier.device)
        if approximator is not None:
            approximator.to(classifier.device)

            def approximate(batch: L2XBatch, masks: torch.Tensor) -> torch.Tensor:
                return approximator(batch.features, masks, batch.segments)
        else:
            approximate = model_approximator(classifier)

        def on_epoch(epoch: int, accuracy: float, loss: float) -> None:
            progress(
                f"training l2x, epoch {epoch} (validation accuracy {accuracy:.3f}, loss {loss:.4f})",
                epoch,
                params.max_epochs,
            )

        report = train_l2x(
            selector,
            approximate,
            approximator,
            train_batches,
            validation_batches,
            k=params.k,
            temperature=params.temperature,
            straight_through=params.straight_through,
            max_epochs=params.max_epochs,
            patience=params.patience,
            learning_rate=params.learning_rate,
            seed=derive_seed(seed, f"l2x-order:{params.init}"),
            on_epoch=on_epoch,
        )
        training_seconds = report.pop("seconds")
        report = {
            "approximator": params.approximator,
            "train_documents": len(train),
            "validation_documents": len(validation),
            **report,
            "training_seconds": round(training_seconds, 3),  # the training loop alone
            "seconds": round(time.perf_counter() - start, 3),  # the whole fit, the model's predictions too
        }
        torch.save(selector.state_dict(), directory / "selector.pt")
        if approximator is not None:
            torch.save(approximator.state_dict(), directory / "approximator.pt")
        (directory / "report.json").write_text(json.dumps(report), encoding="utf-8")

    def _batches(self, classifier: Classifier, documents: Sequence[Example]) -> list[L2XBatch]:
        """Documents encoded in batches of similar length, with the model's predictions (no gradients)."""
        ordered = sorted(documents, key=lambda e: len(e.text) + len(e.text_pair or ""))
        size = self.params.train_batch_size
        batches = []
        for start in range(0, len(ordered), size):
            group = ordered[start : start + size]
            encoding = classifier.encode(group)
            encoding.example_ids = [example.id for example in group]
            predicted = classifier.log_probabilities(encoding).argmax(-1)
            features, segments = self._inputs(classifier, encoding)
            units, valid = word_units(encoding)
            batches.append(
                L2XBatch(
                    features=features,
                    attention_mask=encoding.attention_mask,
                    token_type_ids=encoding.token_type_ids,
                    segments=segments,
                    units=units,
                    valid=valid,
                    predicted=predicted,
                )
            )
        return batches

    @staticmethod
    def _inputs(classifier: Classifier, encoding: Encoding) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's word embeddings (detached) and the segment of each position (-1: special, padding)."""
        with torch.no_grad():
            features = classifier.input_embeddings(encoding.input_ids).detach()
        segments = torch.full(encoding.input_ids.shape, -1, dtype=torch.long)
        for row, row_segments in enumerate(encoding.segments):
            segments[row, : len(row_segments)] = torch.tensor(row_segments, dtype=torch.long)
        return features, segments.to(encoding.input_ids.device)

    # -- explaining -----------------------------------------------------------------------------------
    @torch.no_grad()
    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> Explanation:
        if self.selector is None:
            raise PluginError("l2x explains only after fit")
        features, segments = self._inputs(classifier, encoding)
        units, valid = word_units(encoding)
        logits = self.selector(features.float(), segments, encoding.attention_mask)
        words = word_logits(logits, units, valid)
        scores = token_values(words, units, 0.0)
        selected = token_masks(top_k_words(words, valid, self.params.k), units) * (units >= 0)
        return Explanation(scores, extras={"selected": selected})


def model_approximator(classifier: Classifier) -> Approximate:
    """q(y | x_S) as the frozen model itself (``approximator: model``): token masks (B, L) multiply the
    word embeddings and are the tokens' weights in a floating-point attention mask (padding 0), so that a
    word of mask 0 is deleted on a model with ``token-weights``."""

    def approximate(batch: L2XBatch, masks: torch.Tensor) -> torch.Tensor:
        weights = batch.attention_mask.to(masks.dtype) * masks
        return classifier.logits(
            attention_mask=weights,
            inputs_embeds=batch.features * masks[..., None].to(batch.features.dtype),
            token_type_ids=batch.token_type_ids,
        )

    return approximate
