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

The values are the model's: a row computed in another pass than it would have been (other rows beside it,
other kernels) differs only by float32 rounding, probabilities within 1e-5 (measured on MiniLM: up to
5e-6 between batchings, 7e-6 between kernels).

**Kernels chosen by measuring them.** A transformer's passes are mostly matrix products. On CPU in
float32 PyTorch sends ``torch.nn.Linear`` to MKL; oneDNN, which PyTorch ships too, computes the same
products, and which of the two is faster depends on the CPU and the layer shapes: on one AMD EPYC of this
project oneDNN was 2.7× faster (2026-12-03), on another MKL was 1.4× faster (2026-12-07). So the service
times both on the classifier itself (``choose_kernels``: four passes of 1,024 pad tokens each way, about
1.5 s on MiniLM here) and keeps the faster; oneDNN only when it wins by ``ONEDNN_MARGIN``. The choice is
remembered per machine, PyTorch version, thread count and layer shapes, in the process and, with a store
attached, in the cache folder (``kernels.json``), so that a re-run uses the same kernels and finds its
rows. ``BENCH_FORWARD_KERNELS=torch`` or ``=onednn-linear`` sets it without measuring. With oneDNN chosen,
the classifier's ``torch.nn.Linear`` layers are ``OneDNNLinear`` (same parameters) for the duration of
the service's own passes, which run without gradients; everything else the classifier does (training,
explainers' passes, CUDA, other dtypes) is unchanged. The two kernels' values differ by float32 rounding
only (another order of summation): probabilities within 1e-5 of each other, as between two batchings
(``tests/test_forward_service.py``, ``benchmarks/test_forward_service.py``). Rows kept on disk record
which kernels computed them.

**Passes of one length.** The sequences a call computes are grouped by exact length, and each group
goes through the model in passes of ``TOKENS_PER_PASS`` tokens: no padding, so no token is computed
that the output does not read (sorted but padded passes computed about 5 % more tokens on the removal
metrics' rows of SST-2 sentences).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from filelock import FileLock

from harness.classifier import Classifier

if TYPE_CHECKING:
    from harness.modelstate import ModelState

log = logging.getLogger("bench.forward")  # under "bench": a run's log file holds its warnings

TOKENS_PER_PASS = 4096
"""Tokens (rows × their length) per forward pass of perturbed inputs, unless the caller's batch size asks
for more rows: short sequences go many to a pass, long ones few, so that a pass costs about the same
whatever the length."""
MEMO_BYTES = 128 * 2**20  # the in-process memo's bound, per classifier
ENTRY_OVERHEAD = 250  # bytes of Python objects per memo entry beyond its key's and row's data
FORWARD_ROWS = "forward-rows.sqlite"  # the disk store's file in a cache folder
KERNELS_FILE = "kernels.json"  # the kernels chosen per machine and model shapes, in a cache folder
KERNELS_ENV = "BENCH_FORWARD_KERNELS"  # "torch" or "onednn-linear": the choice, without measuring
ONEDNN_MARGIN = 0.95  # oneDNN is chosen when its passes take at most this fraction of PyTorch's


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
        self._kernels: str | None = None
        self._kernels_chosen = False
        self._kernels_settled = False  # read from (or kept in) a record, or set: not to be changed
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

    @property
    def kernels(self) -> str | None:
        """The kernels of the service's passes: ``ONEDNN``, or None for PyTorch's own (see the module
        docstring); chosen on first use."""
        if not self._kernels_chosen:
            self.choose_kernels(None)
        return self._kernels

    @kernels.setter
    def kernels(self, kernels: str | None) -> None:
        """Set the kernels (``ONEDNN`` or None), as a benchmark comparing them does; rows held in memory
        are forgotten (computed by the others)."""
        if kernels not in (None, ONEDNN):
            raise ValueError(f"kernels: {kernels!r} is neither None (PyTorch's) nor {ONEDNN!r}")
        self._kernels, self._kernels_chosen, self._kernels_settled = kernels, True, True
        self.clear()

    def choose_kernels(self, record: Path | None) -> str | None:
        """Choose the kernels now unless chosen already; with ``record`` (a ``kernels.json``), the choice
        kept there, or this one kept there, even when passes ran before (a model's load checks run before
        the runner attaches its store): a re-run then finds the same kernels and the rows they stored."""
        if record is not None and not self._kernels_settled:
            kernels = choose_kernels(self.classifier, record)
            if self._kernels_chosen and kernels != self._kernels:
                self.clear()  # rows of the other kernels
            self._kernels, self._kernels_chosen, self._kernels_settled = kernels, True, True
        elif not self._kernels_chosen:
            self._kernels = choose_kernels(self.classifier, None)
            self._kernels_chosen = True
        return self._kernels

    def attach_store(
        self, path: Path, model_key: str, read: bool = True, state: ModelState | None = None
    ) -> None:
        """Keep rows on disk in ``path`` under ``model_key`` (the model's cache key: its identity, its
        weights' and its training data's; and the kernels computing the rows, when not PyTorch's
        defaults), reading them back unless ``read`` is False. With ``state`` (the classifier's as it was
        loaded), rows are stored only while its weights are unchanged: a plugin that modified the model
        must not leave rows under its key."""
        kernels = self.choose_kernels(Path(path).parent / KERNELS_FILE)
        self.store = RowStore(path, f"{model_key}:{kernels}" if kernels else model_key, read)
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
                    onednn=self.kernels == ONEDNN,
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
    onednn: bool = False,
) -> np.ndarray:
    """Class log-probabilities (N × K, float64) of id sequences through the model, in passes of one
    length each (no padding), each pass as many rows as ``TOKENS_PER_PASS`` holds (at least
    ``batch_size``); the linear layers through oneDNN when ``onednn``."""
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    result = np.empty((len(sequences), len(classifier.labels)), dtype=np.float64)
    device = classifier.device
    kernels = onednn_linear(classifier) if onednn else nullcontext()
    with torch.inference_mode(), kernels:
        for length in np.unique(lengths)[::-1]:  # longest first
            group = np.flatnonzero(lengths == length)
            rows = max(batch_size, TOKENS_PER_PASS // max(int(length), 1))
            for start in range(0, len(group), rows):
                chunk = group[start : start + rows]
                ids = np.empty((len(chunk), length), dtype=np.int64)
                types = None if type_sequences is None else np.empty_like(ids)
                for row, index in enumerate(chunk):
                    ids[row] = sequences[index]
                    if types is not None:
                        types[row] = type_sequences[index]
                logits = classifier.logits(
                    input_ids=torch.from_numpy(ids).to(device),
                    attention_mask=torch.ones(ids.shape, dtype=torch.long, device=device),
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


TORCH_KERNELS = "torch"  # PyTorch's own kernels, as the environment variable names them


def onednn_kernels(classifier: Classifier) -> str | None:
    """``ONEDNN`` when ``onednn_linear`` could switch some layer of the classifier (on CPU), else None."""
    if _onednn_works() and classifier.device.type == "cpu" and any(_linear_layers(classifier)):
        return ONEDNN
    return None


_CHOICES: dict[str, str] = {}  # what this process chose or read, by ``kernel_signature``


def choose_kernels(classifier: Classifier, record: Path | None = None) -> str | None:
    """The kernels for the service's passes on ``classifier``: ``ONEDNN`` or None (PyTorch's own).

    ``BENCH_FORWARD_KERNELS`` decides when set; otherwise the choice remembered for this machine,
    PyTorch, thread count and layer shapes (in this process, then in ``record``); otherwise both are
    timed on the classifier (``time_kernels``) and the choice kept, in ``record`` too (under a lock, so
    that the workers of one run agree)."""
    if onednn_kernels(classifier) is None:
        return None
    forced = os.environ.get(KERNELS_ENV)
    if forced:
        if forced not in (TORCH_KERNELS, ONEDNN):
            raise ValueError(
                f"{KERNELS_ENV}={forced!r}: set it to '{TORCH_KERNELS}' or '{ONEDNN}', or unset it"
            )
        return None if forced == TORCH_KERNELS else ONEDNN
    signature = kernel_signature(classifier)
    if record is None:
        if signature not in _CHOICES:
            _CHOICES[signature] = _measured_choice(classifier)
    else:
        record.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(record) + ".lock", timeout=600):
            choices = _read_choices(record)
            if signature not in choices:
                kernels = _CHOICES.get(signature) or _measured_choice(classifier)
                choices[signature] = {"kernels": kernels, "at": time.time()}
                tmp = record.with_name(record.name + f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(choices, indent=1, sort_keys=True))
                os.replace(tmp, record)
            _CHOICES[signature] = choices[signature]["kernels"]
    return None if _CHOICES[signature] == TORCH_KERNELS else ONEDNN


def kernel_signature(classifier: Classifier) -> str:
    """What the kernels' relative speed depends on: the CPU, PyTorch, its threads, the linear layers'
    shapes (a digest of them)."""
    shapes = sorted(f"{layer.in_features}x{layer.out_features}" for layer in _linear_layers(classifier))
    digest = hashlib.sha256(",".join(shapes).encode()).hexdigest()[:16]
    return f"{_cpu_name()}|torch {torch.__version__}|{torch.get_num_threads()} threads|linear {digest}"


@functools.cache
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read_choices(record: Path) -> dict:
    try:
        choices = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(choices, dict):
        return {}
    return {
        k: v
        for k, v in choices.items()
        if isinstance(v, dict) and v.get("kernels") in (TORCH_KERNELS, ONEDNN)
    }


def time_kernels(classifier: Classifier, rounds: int = 3, tokens: int = 1024) -> dict[str, float]:
    """Seconds of one pass of ``tokens`` pad tokens (rows of 32) through the classifier with PyTorch's
    kernels and with oneDNN's, the best of ``rounds`` each, taken in turns after a warm-up of each."""
    width = 32
    pad = classifier.pad_token_id if classifier.pad_token_id is not None else 0
    ids = torch.full((max(tokens // width, 1), width), int(pad), dtype=torch.long, device=classifier.device)
    mask = torch.ones_like(ids)

    def one_pass(onednn: bool) -> float:
        with torch.inference_mode(), onednn_linear(classifier) if onednn else nullcontext():
            started = time.perf_counter()
            classifier.logits(input_ids=ids, attention_mask=mask)
            return time.perf_counter() - started

    one_pass(False)
    one_pass(True)
    seconds = {TORCH_KERNELS: float("inf"), ONEDNN: float("inf")}
    for _ in range(rounds):
        seconds[TORCH_KERNELS] = min(seconds[TORCH_KERNELS], one_pass(False))
        seconds[ONEDNN] = min(seconds[ONEDNN], one_pass(True))
    return seconds


def _measured_choice(classifier: Classifier) -> str:
    seconds = time_kernels(classifier)
    choice = ONEDNN if seconds[ONEDNN] <= ONEDNN_MARGIN * seconds[TORCH_KERNELS] else TORCH_KERNELS
    log.info(
        "forward passes: %s kernels (one pass: PyTorch's %.1f ms, oneDNN %.1f ms)",
        choice,
        seconds[TORCH_KERNELS] * 1e3,
        seconds[ONEDNN] * 1e3,
    )
    return choice


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
