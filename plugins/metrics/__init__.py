"""Built-in metrics."""

from harness import hookimpl


@hookimpl
def bench_metrics():
    from plugins.metrics.eraser import Comprehensiveness, Sufficiency
    from plugins.metrics.runtime import Runtime

    return [Comprehensiveness, Sufficiency, Runtime]
