"""Built-in datasets."""

from harness import hookimpl


@hookimpl
def bench_datasets():
    from plugins.datasets.bbc_news import BbcNews
    from plugins.datasets.hf import HuggingFaceDataset
    from plugins.datasets.jsonl import JsonlDataset

    return [BbcNews, JsonlDataset, HuggingFaceDataset]
