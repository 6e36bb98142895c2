"""Built-in models."""

from harness import hookimpl

BENCH_API_VERSION = "1.0"  # the plugin API these plugins are written for (harness.API_VERSION)


@hookimpl
def bench_models():
    from plugins.models.bilstm import BiLSTMAttention
    from plugins.models.bow import BagOfWords
    from plugins.models.hf import HuggingFaceModel, PromptedLM
    from plugins.models.minilm_head import MiniLMHead

    return [MiniLMHead, HuggingFaceModel, BagOfWords, BiLSTMAttention, PromptedLM]
