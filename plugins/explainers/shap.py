"""SHAP explainers: Kernel SHAP on the model's tokens, and shap's Partition explainer on the text."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from harness import (
    PERTURBATION_OUTPUT_DOC,
    Classifier,
    Encoding,
    Example,
    Explainer,
    ExplainerParams,
    PerturbationOutput,
    PerturbationParams,
    PluginError,
    TextDataset,
    centred_model,
    engine_inputs,
    example_seed,
    explained_output,
    presence_function,
    removable_positions,
)

SHAP_PAPER = "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions"


class KernelShapParams(PerturbationParams):
    backend: Literal["captum", "shap"] = Field(
        "captum",
        description="captum: captum.attr.KernelShap (draws coalition sizes from the Shapley kernel, fits an "
        "unweighted regression); shap: shap.KernelExplainer (enumerates the smallest and largest coalitions "
        "first, then samples, and enforces that the scores sum to f(x) − f(all removed))",
    )
    samples: int = Field(
        500,
        ge=2,
        description="coalitions evaluated per example, each one forward pass: the runtime is proportional to "
        "it (minilm-head, 128 tokens, 2 CPU cores: about 11 s per example at 500)",
    )


class KernelShap(Explainer):
    """Kernel SHAP: Shapley values of the tokens, estimated by Shapley-kernel weighted linear regression.

    One player per real token the model read (truncation included; special tokens score 0). A token
    outside the coalition is replaced in the model's ids (``masking``; the baseline is the full removal)
    and every coalition runs through the shared perturbation engine; coalitions are sampled with a
    per-example seed. A text of one token gets its exact Shapley value, f(x) − f(token removed).
    Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions (NeurIPS).
    """

    name: ClassVar[str] = "kernel-shap"
    Params = KernelShapParams
    paper: ClassVar[str] = SHAP_PAPER

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        params = self.params
        scores = torch.zeros(encoding.input_ids.shape, dtype=torch.float64)
        for row, item in enumerate(engine_inputs(encoding)):
            positions = removable_positions(encoding, row)
            if len(positions) == 0:
                continue
            forward = presence_function(
                classifier,
                item,
                positions,
                int(targets[row]),
                masking=params.masking,
                output=params.output,
                batch_size=params.batch_size,
            )
            if len(positions) == 1:  # one player: its Shapley value is exact (and captum cannot sample it)
                values = forward(np.array([[1.0], [0.0]]))
                weights = np.array([values[0] - values[1]])
            else:
                fit = captum_kernel_shap if params.backend == "captum" else shap_kernel_shap
                weights = fit(forward, len(positions), params, example_seed(self.seed, encoding, row))
            scores[row, torch.from_numpy(positions)] = torch.from_numpy(weights)
        return scores.to(classifier.device)


def captum_kernel_shap(
    forward: Callable[[np.ndarray], np.ndarray], n: int, params: KernelShapParams, seed: int
) -> np.ndarray:
    """captum ``KernelShap`` on the kept/removed vector of the n tokens; all samples in one engine call."""
    from captum.attr import KernelShap as CaptumKernelShap

    method = CaptumKernelShap(centred_model(forward, n))
    with torch.random.fork_rng(devices=[]):  # captum samples from torch's global generator
        torch.manual_seed(seed)
        weights = method.attribute(
            torch.ones(1, n),
            baselines=torch.zeros(1, n),
            feature_mask=torch.arange(n)[None],
            n_samples=params.samples,
            perturbations_per_eval=params.samples,
        )
    return weights.detach().to(torch.float64).numpy()[0]


def shap_kernel_shap(
    forward: Callable[[np.ndarray], np.ndarray], n: int, params: KernelShapParams, seed: int
) -> np.ndarray:
    """``shap.KernelExplainer`` with the all-removed vector as its one background row, so that a
    coalition's input is exactly the kept/removed vector; no L1 feature selection (every token scored)."""
    import shap

    state = np.random.get_state()  # shap samples from numpy's global generator
    try:
        np.random.seed(seed)
        explainer = shap.KernelExplainer(forward, np.zeros((1, n)))
        values = explainer.shap_values(np.ones((1, n)), nsamples=params.samples, l1_reg=False, silent=True)
    finally:
        np.random.set_state(state)
    return np.asarray(values, dtype=np.float64).reshape(n)


class PartitionShapParams(ExplainerParams):
    max_evals: int = Field(
        500,
        ge=3,
        description="model evaluations per example (shap's budget; the runtime is proportional to it: "
        "minilm-head, 128 tokens, 2 CPU cores: about 12 s per example at 500)",
    )
    batch_size: int = Field(
        64,
        ge=1,
        description="masked texts per forward pass; shap also expands this many tree nodes before it "
        "evaluates them, so under a max_evals budget it slightly changes which coalitions are evaluated",
    )
    output: PerturbationOutput = Field("probability", description=PERTURBATION_OUTPUT_DOC)


class PartitionShap(Explainer):
    """shap's Partition explainer with its text masker: Owen values over a hierarchy of the model's tokens.

    shap masks tokens with the tokenizer's mask token in the text and the model re-reads the masked
    texts. shap is given the text the model read (cut at the end of its last token, so truncation agrees)
    and its tokens are checked to be the model's, one to one, so every score lands on the model's token;
    special tokens score 0. Deterministic (no sampling). The scores sum to f(x) − f(all masked) once
    ``max_evals`` lets shap split its tree down to single tokens; with a smaller budget shap spreads the
    credit of unexplored clusters over their tokens, [CLS] and [SEP] included, and their share is dropped.
    Single texts only; needs a Hugging Face fast tokenizer. Raw texts come from the dataset given to
    ``fit``; without it the text is decoded from the model's ids.
    Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions; shap's PartitionExplainer.
    """

    name: ClassVar[str] = "partition-shap"
    Params = PartitionShapParams
    paper: ClassVar[str] = f"{SHAP_PAPER}; shap's PartitionExplainer (Owen values)"

    def __init__(self, params: PartitionShapParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        self.examples: dict[str, Example] = {}

    def fit(self, classifier: Classifier, dataset: TextDataset, context=None) -> None:
        """Remember the raw texts by example id: shap masks text, and the encoding carries none."""
        self.examples = {
            example.id: example
            for split in (dataset.train, dataset.validation, dataset.test)
            for example in split
        }

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        import shap

        tokenizer = getattr(classifier, "tokenizer", None)
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            raise PluginError("partition-shap needs a model with a Hugging Face fast tokenizer")
        params = self.params
        scores = torch.zeros(encoding.input_ids.shape, dtype=torch.float64)
        for row in range(len(encoding)):
            if 1 in encoding.segments[row]:
                raise PluginError(
                    "partition-shap explains single texts: shap's text masker cannot mask text pairs"
                )
            positions = removable_positions(encoding, row)
            if len(positions) == 0:
                continue
            text = self.model_visible_text(tokenizer, encoding, row)
            predict = text_function(classifier, int(targets[row]), params.output)
            explainer = shap.Explainer(predict, shap.maskers.Text(tokenizer), algorithm="partition")
            result = explainer([text], max_evals=params.max_evals, batch_size=params.batch_size, silent=True)
            values = np.asarray(result.values[0], dtype=np.float64)
            if values.shape != (len(encoding.tokens[row]),):
                raise PluginError(
                    f"partition-shap: shap returned {values.shape} values for {len(encoding.tokens[row])} tokens"
                )
            scores[row, torch.from_numpy(positions)] = torch.from_numpy(values[positions])
        return scores.to(classifier.device)

    def model_visible_text(self, tokenizer, encoding: Encoding, row: int) -> str:
        """The text shap masks: the raw text cut at the end of the model's last real token, whose
        tokenisation (what shap's masker sees) must give the model's ids and character offsets; else the
        model's real tokens decoded, whose tokenisation must give the model's ids."""
        length = len(encoding.tokens[row])
        ids = encoding.input_ids[row, :length].tolist()
        positions = removable_positions(encoding, row)
        example_id = encoding.example_ids[row] if encoding.example_ids else None
        example = self.examples.get(example_id) if example_id is not None else None
        if example is not None:
            text = example.text[: encoding.offsets[row][positions[-1]][1]]
            tokens = tokenizer(text, return_offsets_mapping=True)
            offsets = [tuple(span) for span in tokens["offset_mapping"]]
            if tokens["input_ids"] == ids and offsets == list(encoding.offsets[row]):
                return text
        text = tokenizer.decode([ids[p] for p in positions])
        if tokenizer(text)["input_ids"] == ids:
            return text
        raise PluginError(
            f"partition-shap: shap's tokens of example {example_id or row} do not match the model's tokens "
            "one to one (the tokenizer does not re-read its own text identically)"
        )


def text_function(
    classifier: Classifier, target: int, output: PerturbationOutput
) -> Callable[[np.ndarray], np.ndarray]:
    """The model as shap's text masker calls it: an array of masked texts → the target's output.
    The texts are re-encoded as the model encodes any text (same tokenizer, same truncation)."""

    def predict(texts: np.ndarray) -> np.ndarray:
        batch = [Example(id="", text=str(text), label=0) for text in texts]
        encoding = classifier.encode(batch)
        with torch.inference_mode():
            logits = classifier.logits(
                input_ids=encoding.input_ids,
                attention_mask=encoding.attention_mask,
                token_type_ids=encoding.token_type_ids,
            )
        log_probabilities = torch.log_softmax(logits.double(), dim=-1).cpu().numpy()
        return explained_output(log_probabilities, output)[:, target]

    return predict
