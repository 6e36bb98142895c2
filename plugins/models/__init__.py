"""Built-in models."""

from harness import hookimpl


@hookimpl
def bench_models():
    from plugins.models.bow import BagOfWords
    from plugins.models.hf import HuggingFaceModel
    from plugins.models.minilm_head import MiniLMHead

    return [MiniLMHead, HuggingFaceModel, BagOfWords]
