"""The forward-pass service: class log-probabilities of token-id sequences, each distinct sequence run
through the model once.

Every removal metric and every perturbation explainer asks the perturbation engine
(``harness.perturb.evaluate``) for the model's output on perturbed inputs, and the engine asks this
service. The service keeps what it computed, per classifier, keyed by the sequence itself (its ids and
token types): the leave-one-out inputs of an example are computed once whichever explainer's cell or
metric asks for them (``loo-correlation`` of six explainers, ``occlusion`` explaining, ``switching-point``
...), the input with everything removed once for every curve that reaches 100 %, and top-k sets that
two explainers or two metrics share once. Only the sequences it has not seen go through the model:
sorted by length (little padding) and batched by a token budget (``TOKENS_PER_PASS``), in inference mode.

With a store attached (``attach_store``: what the runner does, with the model's cache key) the rows are
also kept on disk, content-addressed by the model's key and the sequence, so a re-run or another suite
on the same model reads them back instead of computing them. Memory is bounded: the in-process memo
forgets its least recently used rows beyond ``MEMO_BYTES``.

Every stored row carries a sha256 of its model key, sequence and values, as every cache entry does
(``harness.cache``), checked when it is read: a row that no longer matches (altered by hand or by a tool,
corrupted on a shared file system) is logged, removed and computed again, never served. Rows stored
before digests (no digest) are read as they are, unchecked, as the cache's other entries of that age
are; a run with ``--no-cache`` computes them again and stores them with digests.

The values are the model's: a row computed in another batch than it would have been differs only by
float32 rounding of the padded batch (the attention mask keeps padding out), within 1e-6.

**Linear layers through oneDNN on CPU.** A transformer's passes are mostly matrix products, which
PyTorch sends to MKL; on CPUs where MKL does not use its fastest kernels (AMD's, this project's machine)
oneDNN, which PyTorch ships too, computes the same float32 products about 2.7× faster. The service
switches the classifier's ``torch.nn.Linear`` layers to ``OneDNNLinear`` (same parameters) for the
duration of its own passes, which run without gradients: on CPU in float32 they go through oneDNN;
everything else the classifier does (training, explainers' passes, CUDA, other dtypes) is unchanged. The values differ from MKL's by float32
rounding only (another order of summation): metric values within 1e-6 (``tests/test_forward_service.py``,
``benchmarks/test_forward_service.py``). Rows kept on disk record which kernels computed them.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from harness.classifier import Classifier

if TYPE_CHECKING:
    from harness.modelstate import ModelState

log = logging.getLogger("bench.forward")  # under "bench": a run's log file holds its warnings

TOKENS_PER_PASS = 4096
"""Tokens (rows × the pass's padded length) per forward pass of perturbed inputs, unless the caller's
batch size asks for more rows: short sequences go many to a pass, long ones few, so that a pass costs
about the same whatever the length."""
MEMO_BYTES = 128 * 2**20  # the in-process memo's bound, per classifier
ENTRY_OVERHEAD = 250  # bytes of Python objects per memo entry beyond its key's and row's data
FORWARD_ROWS = "forward-rows.sqlite"  # the disk store's file in a cache folder


@dataclass
class ForwardStats:
    """What the service was asked and what it ran: ``requested`` rows (all asks), ``distinct`` (different
    sequences among them per ask), ``computed`` (run through the model), ``stored`` (read back from the
    disk store)."""

    requested: int = 0
    distinct: int = 0
    computed: int = 0
    stored: int = 0


class ForwardService:
    """One classifier's forward passes on id sequences, each distinct sequence computed once."""

    def __init__(self, classifier: Classifier, memo_bytes: int = MEMO_BYTES):
        self.kernels = onednn_kernels(classifier)
        try:  # weakly: the module's map of services must not keep a classifier alive
            self._classifier = weakref.ref(classifier)
        except TypeError:
            self._classifier = lambda: classifier
        self.memo: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.memo_bytes, self._bytes = memo_bytes, 0
        self.stats = ForwardStats()
        self.store: RowStore | None = None
        self.state: ModelState | None = None  # the model's as loaded: rows are stored only while it holds
        self._lock = threading.Lock()

    @property
    def classifier(self) -> Classifier:
        return self._classifier()

    def attach_store(
        self, path: Path, model_key: str, read: bool = True, state: ModelState | None = None
    ) -> None:
        """Keep rows on disk in ``path`` under ``model_key`` (the model's cache key: its identity, its
        weights' and its training data's; and the kernels computing the rows, when not PyTorch's
        defaults), reading them back unless ``read`` is False. With ``state`` (the classifier's as it was
        loaded), rows are stored only while its weights are unchanged: a plugin that modified the model
        must not leave rows under its key."""
        self.store = RowStore(path, f"{model_key}:{self.kernels}" if self.kernels else model_key, read)
        self.state = state

    def clear(self) -> None:
        """Forget every row held in memory (the disk store keeps its own)."""
        with self._lock:
            self.memo.clear()
            self._bytes = 0

    def log_probabilities(
        self,
        sequences: Sequence[np.ndarray],
        type_sequences: Sequence[np.ndarray] | None,
        batch_size: int,
        share: bool = True,
    ) -> np.ndarray:
        """Class log-probabilities (N × K, float64) of the id sequences (with their token types, when
        the model takes them), computing only the sequences neither the memo nor the store holds.
        ``share=False``: rows unlikely to be asked for again (a surrogate explainer's random samples)
        are read from the memo and the store when there, but neither kept nor stored."""
        keys = [
            _key(s, None if type_sequences is None else type_sequences[i]) for i, s in enumerate(sequences)
        ]
        n_classes = len(self.classifier.labels)
        result = np.empty((len(keys), n_classes), dtype=np.float64)
        with self._lock:
            missing: dict[bytes, int] = {}  # key → index of its first sequence
            for index, key in enumerate(keys):
                row = self.memo.get(key)
                if row is not None:
                    self.memo.move_to_end(key)
                    result[index] = row
                elif key not in missing:
                    missing[key] = index
            self.stats.requested += len(keys)
            self.stats.distinct += len(set(keys))
            fresh: dict[bytes, np.ndarray] = {}
            if missing and self.store is not None:
                for key, row in self.store.read(list(missing)).items():
                    self._remember(key, row)
                    del missing[key]
                    self.stats.stored += 1
            if missing:
                indices = list(missing.values())
                computed = _forward(
                    self.classifier,
                    [sequences[i] for i in indices],
                    None if type_sequences is None else [type_sequences[i] for i in indices],
                    batch_size,
                )
                self.stats.computed += len(indices)
                fresh = dict(zip(missing, computed, strict=True))
                if share:
                    for key, row in fresh.items():
                        self._remember(key, row)
                    if self.store is not None and not (
                        self.state is not None and self.state.weights_changed(self.classifier)
                    ):
                        self.store.write(list(fresh), computed)
            for index, key in enumerate(keys):
                row = self.memo.get(key)
                result[index] = row if row is not None else fresh[key]
        return result

    def _remember(self, key: bytes, row: np.ndarray) -> None:
        if key not in self.memo:
            self._bytes += _size(key, row)
        self.memo[key] = row
        self.memo.move_to_end(key)
        while self._bytes > self.memo_bytes and len(self.memo) > 1:
            old_key, old_row = self.memo.popitem(last=False)
            self._bytes -= _size(old_key, old_row)


_SERVICES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forward_service(classifier: Classifier) -> ForwardService:
    """The classifier's forward-pass service, created on first use and kept beside the classifier (not in
    it, so a classifier still pickles): its rows die with it."""
    try:
        service = _SERVICES.get(classifier)
    except TypeError:  # a classifier that cannot be weakly referenced or hashed: a service per call
        return ForwardService(classifier)
    if service is None:
        service = _SERVICES[classifier] = ForwardService(classifier)
    return service


def _size(key: bytes, row: np.ndarray) -> int:
    """What a memo entry holds in memory: its key and row, and Python's objects around them."""
    return len(key) + row.nbytes + ENTRY_OVERHEAD


def _key(ids: np.ndarray, types: np.ndarray | None) -> bytes:
    """A sequence as a key: its ids (and token types) as bytes: equal exactly when the inputs are."""
    key = np.asarray(ids, dtype=np.int64).tobytes()
    return key if types is None else key + b"|" + np.asarray(types, dtype=np.int64).tobytes()


def _forward(
    classifier: Classifier,
    sequences: Sequence[np.ndarray],
    type_sequences: Sequence[np.ndarray] | None,
    batch_size: int,
) -> np.ndarray:
    """Class log-probabilities (N × K, float64) of id sequences through the model: longest first, each
    pass as many rows as ``TOKENS_PER_PASS`` holds at its padded length (at least ``batch_size``)."""
    lengths = np.array([len(sequence) for sequence in sequences])
    order = np.argsort(-lengths, kind="stable")
    result = np.empty((len(sequences), len(classifier.labels)), dtype=np.float64)
    device = classifier.device
    start = 0
    with torch.inference_mode(), onednn_linear(classifier):
        while start < len(order):
            width = max(int(lengths[order[start]]), 1)  # the longest of the pass: rows are sorted
            rows = max(batch_size, TOKENS_PER_PASS // width)
            chunk = order[start : start + rows]
            start += len(chunk)
            ids = np.full((len(chunk), width), classifier.pad_token_id, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            types = None if type_sequences is None else np.zeros((len(chunk), width), dtype=np.int64)
            for row, index in enumerate(chunk):
                ids[row, : lengths[index]] = sequences[index]
                mask[row, : lengths[index]] = 1
                if types is not None:
                    types[row, : lengths[index]] = type_sequences[index]
            logits = classifier.logits(
                input_ids=torch.from_numpy(ids).to(device),
                attention_mask=torch.from_numpy(mask).to(device),
                token_type_ids=None if types is None else torch.from_numpy(types).to(device),
            )
            result[chunk] = torch.log_softmax(logits.double(), dim=-1).cpu().numpy()
    return result


class RowStore:
    """Rows on disk: one SQLite file, rows keyed by (model key, sequence), values float64 bytes, each with
    its digest (``row_digest``). Safe for several processes (WAL, a busy timeout); a row is written once
    and never changes, except that one found altered is removed and one stored before digests is
    replaced by the same row with its digest."""

    def __init__(self, path: Path, model_key: str, read: bool = True):
        self.path, self.model_key, self.read_rows = Path(path), model_key, read
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS forward_rows (model TEXT NOT NULL, sequence BLOB NOT NULL, "
                "value BLOB NOT NULL, digest TEXT, PRIMARY KEY (model, sequence))"
            )
            _add_digest_column(db)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def read(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """The stored rows of these sequences that match their digests (or have none); the others are
        logged and removed, so that they are computed and stored again."""
        if not self.read_rows or not keys:
            return {}
        found: dict[bytes, np.ndarray] = {}
        altered: list[tuple[bytes, str]] = []
        with closing(self._connect()) as db:
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                marks = ",".join("?" * len(part))
                for sequence, value, digest in db.execute(
                    f"SELECT sequence, value, digest FROM forward_rows WHERE model=? AND sequence IN ({marks})",  # noqa: S608
                    (self.model_key, *part),
                ):
                    sequence = bytes(sequence)
                    if digest is not None and digest != row_digest(self.model_key, sequence, value):
                        altered.append((sequence, digest))
                        continue
                    found[sequence] = np.frombuffer(value, dtype=np.float64).copy()
            if altered:
                self._reject(db, altered)
        return found

    def _reject(self, db: sqlite3.Connection, altered: list[tuple[bytes, str]]) -> None:
        """Rows whose values do not match their digests: one line in the log, and removed (when the file
        can be written) so that the rows computed instead are stored in their place."""
        log.warning(
            "%d forward row(s) of model %s in %s do not match their digests (altered or corrupted); "
            "discarding them and recomputing",
            len(altered),
            self.model_key,
            self.path,
        )
        try:
            with db:
                db.executemany(
                    "DELETE FROM forward_rows WHERE model=? AND sequence=? AND digest=?",
                    [(self.model_key, sequence, digest) for sequence, digest in altered],
                )
        except sqlite3.Error as error:
            log.warning("could not remove the altered forward rows from %s (%s)", self.path, error)

    def write(self, keys: list[bytes], rows: np.ndarray) -> None:
        """Store the rows with their digests: a row already stored is kept, unless it was stored before
        digests (then it is replaced by this one)."""
        values = [np.ascontiguousarray(row).tobytes() for row in rows]
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT INTO forward_rows (model, sequence, value, digest) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model, sequence) DO UPDATE SET value=excluded.value, digest=excluded.digest "
                "WHERE forward_rows.digest IS NULL",
                [
                    (self.model_key, key, value, row_digest(self.model_key, key, value))
                    for key, value in zip(keys, values, strict=True)
                ],
            )


def row_digest(model_key: str, sequence: bytes, value: bytes) -> str:
    """sha256 of a stored row: its model key, its sequence and its values' bytes, each preceded by its
    length (so that no two different rows give the same bytes to hash)."""
    digest = hashlib.sha256()
    for part in (model_key.encode(), bytes(sequence), bytes(value)):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def _add_digest_column(db: sqlite3.Connection) -> None:
    """Give a store written before digests its ``digest`` column (its rows keep none: read unchecked)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(forward_rows)")}
    if "digest" in columns:
        return
    try:
        db.execute("ALTER TABLE forward_rows ADD COLUMN digest TEXT")
    except sqlite3.OperationalError:  # another process added it meanwhile
        if "digest" not in {row[1] for row in db.execute("PRAGMA table_info(forward_rows)")}:
            raise


class OneDNNLinear(torch.nn.Linear):
    """``torch.nn.Linear`` whose passes without gradients on CPU (float32) run through oneDNN; every
    other pass is ``torch.nn.Linear``'s own. Set on a classifier's layers for the service's passes by
    ``onednn_linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() < 2:
            return super().forward(x)
        shape = x.shape
        weight = self.weight.to_mkldnn()
        bias = None if self.bias is None else self.bias.to_mkldnn()
        y = torch._C._nn.mkldnn_linear(x.reshape(-1, shape[-1]).to_mkldnn(), weight, bias)
        return y.to_dense().reshape(*shape[:-1], self.out_features)


ONEDNN = "onednn-linear"


def onednn_kernels(classifier: Classifier) -> str | None:
    """``ONEDNN`` when ``onednn_linear`` would switch some layer of the classifier, else None."""
    return ONEDNN if _onednn_works() and any(_linear_layers(classifier)) else None


@contextmanager
def onednn_linear(classifier: Classifier) -> Iterator[None]:
    """For the duration: the classifier's ``torch.nn.Linear`` layers (exactly that class) are
    ``OneDNNLinear``, when oneDNN is available and works here. Restored afterwards, so that code that
    looks at a layer's exact type (captum's LRP rules) sees the model as it was built."""
    layers = list(_linear_layers(classifier)) if _onednn_works() else []
    for layer in layers:
        layer.__class__ = OneDNNLinear
    try:
        yield
    finally:
        for layer in layers:
            layer.__class__ = torch.nn.Linear


def _linear_layers(classifier: Classifier) -> Iterator[torch.nn.Linear]:
    seen: set[int] = set()
    modules = getattr(classifier, "torch_modules", list)  # a duck-typed classifier may have none
    for module in modules():
        for layer in module.modules():
            if type(layer) is torch.nn.Linear and id(layer) not in seen:
                seen.add(id(layer))
                yield layer


_ONEDNN_WORKS: bool | None = None


def _onednn_works() -> bool:
    """Whether this PyTorch computes a linear layer through oneDNN, to float32 rounding of its own."""
    global _ONEDNN_WORKS
    if _ONEDNN_WORKS is None:
        try:
            generator = torch.Generator().manual_seed(0)
            with torch.random.fork_rng(devices=[]):  # the run's random state stays as it was
                layer = torch.nn.Linear(8, 3)
            x = torch.randn(2, 5, 8, generator=generator)
            with torch.no_grad():
                expected = layer(x)
                layer.__class__ = OneDNNLinear
                _ONEDNN_WORKS = torch.backends.mkldnn.is_available() and torch.allclose(
                    layer(x), expected, atol=1e-5
                )
        except Exception as error:  # an old or unusual build: PyTorch's default kernels, always correct
            log.debug("oneDNN linear layers unavailable: %s", error)
            _ONEDNN_WORKS = False
    return _ONEDNN_WORKS
