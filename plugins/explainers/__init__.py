"""Built-in explainers."""

from harness import hookimpl

BENCH_API_VERSION = "1.0"  # the plugin API these plugins are written for (harness.API_VERSION)


@hookimpl
def bench_explainers():
    from plugins.explainers.attention import Attention
    from plugins.explainers.deeplift import LRP, DeepLift, DeepLiftShap
    from plugins.explainers.gmask import GMask, IMask
    from plugins.explainers.gradient import IntegratedGradients, Saliency, SmoothGrad
    from plugins.explainers.iba import IBA
    from plugins.explainers.l2e import L2E
    from plugins.explainers.l2x import L2X
    from plugins.explainers.ldav import LDAV
    from plugins.explainers.lime import Lime
    from plugins.explainers.occlusion import Occlusion
    from plugins.explainers.precomputed import Precomputed
    from plugins.explainers.random import RandomExplainer
    from plugins.explainers.shap import KernelShap, PartitionShap

    return [
        RandomExplainer,
        Saliency,
        IntegratedGradients,
        SmoothGrad,
        DeepLift,
        DeepLiftShap,
        LRP,
        Attention,
        Occlusion,
        Lime,
        KernelShap,
        PartitionShap,
        L2E,
        L2X,
        IBA,
        IMask,
        GMask,
        LDAV,
        Precomputed,
    ]
