"""bench: a benchmark harness for feature-attribution explainers of NLP text classifiers.

Plugin authors import everything they need from here::

    from harness import hookimpl, Explainer, Metric, Model, Dataset
"""

from importlib.metadata import PackageNotFoundError, version

from harness.attribution import Attribution
from harness.classifier import Classifier, Encoding
from harness.data import Example, TextDataset
from harness.errors import BenchError, PluginError
from harness.hookspecs import hookimpl
from harness.plugin import (
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
)

try:
    __version__ = version("xai-bench-harness")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Attribution",
    "BenchError",
    "Classifier",
    "Dataset",
    "Encoding",
    "Example",
    "Explainer",
    "Explanation",
    "FitContext",
    "ExplainerParams",
    "LabelledScores",
    "Metric",
    "MetricInput",
    "MetricOutput",
    "Model",
    "Params",
    "PluginError",
    "TeacherSpec",
    "TextDataset",
    "hookimpl",
]
