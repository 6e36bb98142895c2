"""The harness's side of every plugin call: what a plugin is handed is its own copy, and what it hands back
is checked before anything caches, stores or shows it.

Handed out as copies: the encoding an explainer explains (its tensors and token lists) and the
attributions (a reference cell's and extra examples' included) a metric reads. A plugin that changes what
it was handed (an explainer masking ``input_ids`` in place, a metric sorting ``attribution.scores``) then
changes its own copy only: not the ids stored with the attributions, not what the next metric on the same
explanation reads, not the cache. Copies rather than a check after the call, because torch has no
read-only tensors and a Python list cannot be frozen: a check would need a copy (or a digest of every
value) anyway, and a copy costs what that digest would, without failing a plugin whose change was harmless.
The copies are shallow where the values are immutable (floats, ints, strings, tuples): a list is copied by
reference to its items, O(tokens) pointer copies (``copy.deepcopy`` would copy each float, about 40 times
slower), and a tensor by ``clone``.

Checked on the way back, each failure a ``PluginError`` naming the plugin (so the cell fails, never a
stored number): an explanation's stated ``seconds`` (``seconds_problem``), a metric's values
(``values_problem``: finite or NaN, inside the declared ``range``). The explain stage checks scores for
shape and finiteness itself. An explanation that scores every token alike (``is_degenerate``) is not
refused, since a model may truly give an example nothing to tell apart, but it ranks no unit above
another (alike in |score| is enough for a metric ranking by |score|, ``Metric.score_order_for``): a metric that ranks units (``Metric.ranks_units``) is undefined on it, NaN with a note counting
such examples (``undefined_where_degenerate``), where it would otherwise score the text's order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from harness.attribution import LABEL_VALUES, Attribution
from harness.classifier import Encoding
from harness.plugin import ScoreOrder

# A metric value may pass its declared bound by this much, relative to the bound (absolute under 1):
# metrics compute in float64 from float32 model outputs (relative rounding 6e-8 per operation), so a
# probability difference or a share can land a few ulps past 1 or 0; a wrong value is orders larger.
RANGE_TOLERANCE = 1e-6


def _copied(value):
    """``value`` as a plugin may change without anyone else seeing it (see the module docstring)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        if value and isinstance(value[0], list | dict | torch.Tensor | np.ndarray):
            return [_copied(item) for item in value]
        return list(value)
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    return value  # immutable: numbers, strings, tuples, None


def encoding_copy(encoding: Encoding) -> Encoding:
    """The encoding an explainer is handed: its tensors cloned and its lists copied, so that the ids and
    tokens stored with the attributions are those the model read."""
    changes = {f.name: _copied(getattr(encoding, f.name)) for f in dataclasses.fields(encoding) if f.init}
    return dataclasses.replace(encoding, **changes)


def attribution_copy(attribution: Attribution) -> Attribution:
    """An attribution a metric may change without another metric, the store or the cache seeing it."""
    changes = {f.name: _copied(getattr(attribution, f.name)) for f in dataclasses.fields(attribution)}
    return dataclasses.replace(attribution, **changes)


def attributions_copy(attributions: Sequence[Attribution]) -> list[Attribution]:
    return [attribution_copy(attribution) for attribution in attributions]


def seconds_problem(seconds: torch.Tensor) -> str | None:
    """What is wrong with the seconds an explanation states (``Explanation.seconds``), or None: each must
    be finite and ≥ 0, or NaN (unknown)."""
    values = seconds.detach().to("cpu", torch.float64)
    wrong = values[~torch.isnan(values) & (torch.isinf(values) | (values < 0))]
    if len(wrong):
        return f"seconds {float(wrong[0])!r}: a cost must be finite and ≥ 0 (NaN: unknown)"
    return None


def attribution_problem(attribution: Attribution) -> str | None:
    """What is wrong with a stored attribution (one read back from the cache, written perhaps before these
    checks), or None: one score per token, finite on real tokens, labels (if any) among ``LABEL_VALUES``,
    group scores (if any) finite, and seconds finite and ≥ 0 or NaN."""
    if len(attribution.scores) != len(attribution.input_ids):
        return f"{len(attribution.scores)} scores for {len(attribution.input_ids)} tokens"
    real = np.asarray(attribution.segments) >= 0
    if not np.isfinite(np.asarray(attribution.scores, dtype=np.float64)[real]).all():
        return "non-finite scores on real tokens"
    if attribution.labels is not None and not set(attribution.labels) <= set(LABEL_VALUES):
        return f"labels outside {LABEL_VALUES}"
    if attribution.group_scores is not None and not np.isfinite(attribution.group_scores).all():
        return "non-finite group_scores"
    return seconds_problem(torch.tensor([attribution.seconds], dtype=torch.float64))


def values_problem(
    metric: type, values: Sequence[float], example_ids: Sequence[str], what: str = "value"
) -> str | None:
    """What is wrong with the values a metric (class ``metric``) returned, one per example of
    ``example_ids``, or None: each must be NaN (undefined) or a finite number inside the metric's declared
    ``range`` (to ``RANGE_TOLERANCE``)."""
    low, high = metric.range
    for value, example_id in zip(values, example_ids, strict=True):
        if math.isnan(value):
            continue
        where = f"{what} {value!r} for example {example_id!r}"
        if math.isinf(value):
            return f"{where}: a value must be finite, or NaN where the metric is undefined"
        if value < low - RANGE_TOLERANCE * max(1.0, abs(low)) or value > high + RANGE_TOLERANCE * max(
            1.0, abs(high)
        ):
            return f"{where}, outside its declared range [{low}, {high}]"
    return None


def curves_problem(curves: Sequence, example_ids: Sequence[str]) -> str | None:
    """What is wrong with the curves a metric returned, one per example of ``example_ids``, or None: each
    a dict from names (``"x"``, ``"y"``...) to lists of Python numbers (what JSON stores), each finite or
    NaN (a point where the metric is undefined, e.g. an example with no removable unit). Text and
    infinities would be stored and exported as they are (``bench export --curves``)."""
    for curve, example_id in zip(curves, example_ids, strict=True):
        where = f"curve for example {example_id!r}"
        if not isinstance(curve, dict):
            return f"{where} of type {type(curve).__name__}, expected a dict of named lists of numbers"
        for name, points in curve.items():
            if not isinstance(name, str) or not isinstance(points, list | tuple):
                return f"{where}: {name!r} → {type(points).__name__}, expected a name and a list of numbers"
            for point in points:
                if not isinstance(point, int | float) or math.isinf(point):
                    return (
                        f"{where}: {name!r} holds {point!r}, expected finite Python ints or floats "
                        "(NaN where the metric is undefined; .tolist() converts numpy's)"
                    )
    return None


def is_degenerate(attribution: Attribution, order: ScoreOrder | None = None) -> bool:
    """Whether the attribution scores every real token alike, with two or more of them: it ranks no unit
    above another, so a ranking read from it is the text's order (ties keep it), not the explainer's. One
    real token is no ranking to make, and is not degenerate. Alike in the order the metric ranks by
    (``Metric.score_order_for``): by |score| for "absolute" (+1, −1, +1 ties every unit), else by score."""
    real = np.asarray(attribution.segments) >= 0
    scores = np.asarray(attribution.scores, dtype=np.float64)[real]
    if order == "absolute":
        scores = np.abs(scores)
    return len(scores) > 1 and bool((scores == scores[0]).all())


def undefined_where_degenerate(
    values: Sequence[float],
    attributions: Sequence[Attribution],
    reference: Sequence[Attribution] | None = None,
    order: ScoreOrder | None = None,
) -> tuple[list[float], str | None]:
    """The values of a metric that ranks units (``Metric.ranks_units``) in ``order`` (its
    ``score_order_for``), NaN where the example's attribution, or its reference's (a metric comparing two
    cells), is degenerate in that order (``is_degenerate``), with the note saying how many; the values as
    they are, and None, where none is."""
    degenerate = {a.example_id for a in (*attributions, *(reference or ())) if is_degenerate(a, order)}
    undefined = [a.example_id in degenerate for a in attributions]
    count = sum(undefined)
    if not count:
        return list(values), None
    note = (
        f"{count} of {len(attributions)} examples explained by scores equal "
        f"{'in |score| ' if order == 'absolute' else ''}on every token "
        f"{'(in this cell or its reference) ' if reference is not None else ''}are undefined (NaN): such "
        "an explanation ranks no unit above another, and scoring it would score the text's order"
    )
    return [math.nan if flag else value for value, flag in zip(values, undefined, strict=True)], note
