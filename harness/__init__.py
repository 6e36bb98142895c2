"""bench: a benchmark harness for feature-attribution explainers of NLP text classifiers.

**The plugin API.** Everything a plugin of any kind needs is importable from here, and only from here::

    from harness import hookimpl, Explainer, Metric, Model, Dataset

The submodules of ``harness`` are its implementation: a plugin that imports one depends on code that may
change in any release. The built-in plugins (``plugins/``) import nothing else from the harness, and a test
holds them to it. ``API_VERSION`` is the version of this API (``MAJOR.MINOR``): a minor release adds names,
a major release changes or removes some. A plugin package declares the version it was written for in its
entry-point module (``BENCH_API_VERSION = "1.0"``); discovery refuses a package written for another major
version or a newer minor one, naming it (see ``harness.registry``). ``harness.testing`` is the conformance
kit plugin authors run from their own tests.
"""

from importlib.metadata import PackageNotFoundError, version

# The plugin kinds, what they exchange, and the hooks that register them.
from harness.attribution import (
    IGNORE_INDEX,
    LABEL_VALUES,
    Attribution,
    Granularity,
    Order,
    aggregate_words,
    discretise,
    word_units,
)
from harness.cache import TOKENIZER_PATTERNS, WEIGHT_PATTERNS, files_fingerprint
from harness.classifier import Classifier, Encoding
from harness.data import Example, Span, TextDataset, fingerprint_examples
from harness.errors import BenchError, PluginError

# What gradient explainers share.
from harness.gradients import (
    BASELINE_DOC,
    GRADIENT_OUTPUT_DOC,
    INTERNAL_BATCH_DOC,
    REDUCTION_DOC,
    TOKENS_PER_PASS,
    Baseline,
    GradientOutput,
    Reduction,
    baseline_embeddings,
    embedded_inputs,
    example_generators,
    example_noise,
    forward_function,
    real_token_scale,
    rows_per_pass,
    token_gradient_scores,
)
from harness.hookspecs import hookimpl

# Models over Hugging Face transformers, and the embedded MiniLM encoder.
from harness.huggingface import TransformersClassifier, hub_offline, mean_pool, quiet_transformers

# LDAV: models that learn a vector per class beside their weights, and the explainer that reads them.
from harness.ldav import (
    CLASS_VECTORS,
    LDAV_PAPER,
    ClassVectors,
    EpochLossTerms,
    LDAVParams,
    default_class_vector_radius,
    ldav_loss_terms,
    ldav_report,
    ldav_scores,
)
from harness.minilm import load_minilm_encoder, load_minilm_tokenizer, minilm_identity

# The perturbation engine (removal metrics) and what perturbation explainers share.
from harness.perturb import (
    GRANULARITY_DOC,
    MASKING_DOC,
    PERTURBATION_BATCH_DOC,
    PERTURBATION_OUTPUT_DOC,
    Masking,
    PerturbationOutput,
    PerturbationParams,
    Perturbations,
    RemovalMetric,
    centred_model,
    engine_inputs,
    evaluate,
    evaluate_together,
    example_seed,
    explained_output,
    presence_function,
    removable_positions,
    removal_curves,
    removal_masks,
    replacement_id,
    top_count,
    top_unit_masks,
    with_unperturbed,
)
from harness.plugin import (
    VARIANT_PATTERN,
    Dataset,
    Explainer,
    ExplainerParams,
    Explanation,
    FitContext,
    LabelledScores,
    Metric,
    MetricInput,
    MetricOutput,
    Model,
    Params,
    TeacherSpec,
    canonical_variant,
    variant_seed_streams,
)

# Human rationales as token units (plausibility metrics).
from harness.rationale import UnitRationale, has_rationale, rationale_mask, rationale_spans, rationale_units

# Seeds: independent streams, per-example generators that never depend on the batch.
from harness.seeds import derive_seed, example_rng

# What dataset plugins share: split parameters, stratified splits, rows to examples.
from harness.splits import (
    SplitParams,
    SubsetParams,
    example_from_row,
    label_names,
    parse_spans,
    split_three,
    stratified_take,
    subsample,
)
from harness.tokenization import (
    WORD_MASK,
    WORD_PAD,
    WORD_SEP,
    WORD_SPECIALS,
    WORD_UNK,
    build_word_vocabulary,
    encode_with_tokenizer,
    encode_words,
    word_tokens,
)

# Training loops of model plugins.
from harness.training import EarlyStopping

API_VERSION = "1.0"
"""The plugin API's version, ``MAJOR.MINOR``: what plugin packages declare as ``BENCH_API_VERSION``."""

try:
    __version__ = version("xai-bench-harness")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "aggregate_words",
    "word_units",
    "EpochLossTerms",
    "ldav_report",
    "variant_seed_streams",
    "EarlyStopping",
    "word_tokens",
    "encode_words",
    "build_word_vocabulary",
    "WORD_UNK",
    "WORD_SPECIALS",
    "WORD_SEP",
    "WORD_PAD",
    "WORD_MASK",
    "default_class_vector_radius",
    "ldav_scores",
    "ldav_loss_terms",
    "LDAVParams",
    "ClassVectors",
    "LDAV_PAPER",
    "CLASS_VECTORS",
    "API_VERSION",
    "BASELINE_DOC",
    "GRADIENT_OUTPUT_DOC",
    "GRANULARITY_DOC",
    "IGNORE_INDEX",
    "INTERNAL_BATCH_DOC",
    "LABEL_VALUES",
    "MASKING_DOC",
    "PERTURBATION_BATCH_DOC",
    "PERTURBATION_OUTPUT_DOC",
    "REDUCTION_DOC",
    "TOKENIZER_PATTERNS",
    "TOKENS_PER_PASS",
    "VARIANT_PATTERN",
    "WEIGHT_PATTERNS",
    "Attribution",
    "Baseline",
    "BenchError",
    "Classifier",
    "Dataset",
    "Encoding",
    "Example",
    "Explainer",
    "ExplainerParams",
    "Explanation",
    "FitContext",
    "GradientOutput",
    "Granularity",
    "LabelledScores",
    "Masking",
    "Metric",
    "MetricInput",
    "MetricOutput",
    "Model",
    "Order",
    "Params",
    "PerturbationOutput",
    "PerturbationParams",
    "Perturbations",
    "PluginError",
    "RemovalMetric",
    "Reduction",
    "Span",
    "SplitParams",
    "SubsetParams",
    "TeacherSpec",
    "TextDataset",
    "TransformersClassifier",
    "UnitRationale",
    "baseline_embeddings",
    "canonical_variant",
    "centred_model",
    "derive_seed",
    "discretise",
    "embedded_inputs",
    "encode_with_tokenizer",
    "engine_inputs",
    "evaluate",
    "evaluate_together",
    "example_from_row",
    "example_generators",
    "example_noise",
    "example_rng",
    "example_seed",
    "explained_output",
    "files_fingerprint",
    "fingerprint_examples",
    "forward_function",
    "has_rationale",
    "hookimpl",
    "hub_offline",
    "label_names",
    "load_minilm_encoder",
    "load_minilm_tokenizer",
    "mean_pool",
    "minilm_identity",
    "parse_spans",
    "presence_function",
    "quiet_transformers",
    "rationale_mask",
    "rationale_spans",
    "rationale_units",
    "real_token_scale",
    "removable_positions",
    "removal_curves",
    "removal_masks",
    "replacement_id",
    "rows_per_pass",
    "split_three",
    "stratified_take",
    "subsample",
    "token_gradient_scores",
    "top_count",
    "top_unit_masks",
    "with_unperturbed",
]
