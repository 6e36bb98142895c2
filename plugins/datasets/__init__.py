"""Built-in datasets."""

from harness import hookimpl

BENCH_API_VERSION = "1.0"  # the plugin API these plugins are written for (harness.API_VERSION)


@hookimpl
def bench_datasets():
    from plugins.datasets.bbc_news import BbcNews
    from plugins.datasets.hf import HuggingFaceDataset
    from plugins.datasets.jsonl import JsonlDataset

    return [BbcNews, JsonlDataset, HuggingFaceDataset]
