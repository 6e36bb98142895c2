"""Built-in explainers."""

from harness import hookimpl


@hookimpl
def bench_explainers():
    from plugins.explainers.gradient import IntegratedGradients, Saliency
    from plugins.explainers.random import RandomExplainer

    return [RandomExplainer, Saliency, IntegratedGradients]
