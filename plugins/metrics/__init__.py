"""Built-in metrics."""

from harness import hookimpl

BENCH_API_VERSION = "1.0"  # the plugin API these plugins are written for (harness.API_VERSION)


@hookimpl
def bench_metrics():
    from plugins.metrics.disagreement import (
        FeatureAgreement,
        PairwiseRankAgreement,
        RankAgreement,
        RankCorrelation,
        SignAgreement,
        SignedRankAgreement,
    )
    from plugins.metrics.eraser import Comprehensiveness, Sufficiency
    from plugins.metrics.faithfulness import (
        AOPC,
        DeltaLogOdds,
        LogOdds,
        LooCorrelation,
        MatchedDeltaLogOdds,
        MorfLerf,
        PostHocAccuracy,
        PredictionAgreement,
        SwitchingPoint,
        TeacherAgreement,
        UnchangedPredictions,
    )
    from plugins.metrics.plausibility import Auprc, IouF1, TokenF1
    from plugins.metrics.randomization import Jaccard
    from plugins.metrics.runtime import DeviceSpeedUp, Runtime, SpeedUp
    from plugins.metrics.stability import IouStability

    return [
        Comprehensiveness,
        Sufficiency,
        AOPC,
        DeltaLogOdds,
        MatchedDeltaLogOdds,
        LogOdds,
        UnchangedPredictions,
        SwitchingPoint,
        MorfLerf,
        PostHocAccuracy,
        PredictionAgreement,
        TeacherAgreement,
        LooCorrelation,
        TokenF1,
        IouF1,
        Auprc,
        Jaccard,
        IouStability,
        Runtime,
        SpeedUp,
        DeviceSpeedUp,
        FeatureAgreement,
        RankAgreement,
        SignAgreement,
        SignedRankAgreement,
        RankCorrelation,
        PairwiseRankAgreement,
    ]
