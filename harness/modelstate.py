"""Whether a plugin changed the model it was handed: a cheap fingerprint of a classifier's state.

Explainers and metrics are handed the workspace's classifier itself, shared by every cell of the process
that uses that model; a plugin that changes it (weights negated or zeroed in place, a parameter's
``.data`` replaced, a buffer changed, the tokenizer's vocabulary edited) would change every later cell's
numbers and the cache entries written from them. ``harness.stages`` takes the classifier's
``ModelState`` when the workspace loads it and checks it after every plugin call: a change fails that
cell naming the plugin, nothing computed by it is cached, and the workspace drops the model so that
later cells get a freshly loaded one. The forward-pass service (``harness.forward``) checks it too
before it stores rows on disk, so rows computed on a changed model are never kept under its key.

What the fingerprint holds, and so what it notices:

- every parameter and buffer of ``Classifier.torch_modules()``, by name: the tensor's ``id`` (a
  parameter or module replaced), its ``data_ptr`` (``.data`` or the storage replaced) and its
  ``_version``, which every in-place operation on the tensor bumps, under ``torch.no_grad`` too
  (``p.mul_(-1)``, ``p.zero_()``, ``p.copy_(...)``, ``load_state_dict``). A tensor whose version moved
  but whose CRC-32 (taken when the state was) is unchanged was put back as it was (captum's LRP changes
  weights and restores them): no change;
- the classifier's public attributes, compared by the names there when the state was taken (one set
  later, a cached property, is no change): plain values, lists and dicts by value (a word model's
  vocabulary list and token → id index edited in place), tensors by ``id``, ``data_ptr`` and
  ``_version``, a Hugging Face tokenizer by its length, settings, added tokens and vocabulary (a fast
  one's serialised components, without the truncation and padding state that each call of the
  tokenizer sets for itself). Private attributes and other objects are left out.

Not noticed: an in-place write that bypasses autograd's version counter (through ``p.data``, e.g.
``p.data.zero_()``: ``.data`` shares the storage but not the counter; or through the storage or a NumPy
view), and edits to objects the classifier holds other than its modules and tokenizer. A content hash
of every tensor at every check would notice the first, but costs too much to run around every plugin
call: on ``minilm-head`` (22.6 M parameters, 103 tensors, a 30 522-token tokenizer) CRC-32 or adler32 of
all bytes takes about 45 ms and an integer sum 320 ms on this project's loaded 2-core machine, so the
checksums are taken once, when the model is loaded, and read again only for a tensor whose version
moved. Measured on that machine (under ``nice``, the other core busy): ``change`` on an unchanged
``minilm-head`` about 4 ms (1 ms for the tensors, 2.6 ms the tokenizer's components), the
forward-pass service's ``weights_changed`` about 1 ms, ``ModelState.of`` about 55 ms once per load; on
``bow`` all well under a millisecond. The checks run outside the timed explain call.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from harness.classifier import Classifier

TensorState = tuple[int, str, int, int, int]  # module index, name, id, data_ptr, _version


@dataclass(eq=False)
class ModelState:
    """A classifier's fingerprint: its tensors' identities and versions, each tensor's content checksum
    (read only when its version moved), and a digest of its other attributes (vocabulary, tokenizer),
    compared within one process (``hash`` is salted per process)."""

    tensors: tuple[TensorState, ...]
    checksums: dict[tuple[int, str], int | None]
    attributes: dict[str, object]

    @classmethod
    def of(cls, classifier: Classifier) -> ModelState:
        tensors = _tensor_state(classifier)
        checksums = {(i, name): _checksum(t) for (i, name), t in _named_tensors(classifier)}
        return cls(tensors, checksums, _attributes_digest(classifier))

    def change(self, classifier: Classifier) -> str | None:
        """What changed in ``classifier`` since this state was taken, in a few words, or None."""
        if self.weights_changed(classifier):
            return _tensor_change(self.tensors, _tensor_state(classifier))
        now = _attributes_digest(classifier)
        # compared by the names taken first: an attribute set later (a cached property) is no change
        changed = sorted(name for name, digest in self.attributes.items() if now.get(name) != digest)
        if changed:
            return f"its attribute '{changed[0]}' changed (its tokenizer or vocabulary, say)"
        return None

    def weights_changed(self, classifier: Classifier) -> bool:
        """Whether a parameter or buffer changed (the part that decides a forward pass on given ids).
        A tensor changed in place whose content is as it was (a plugin that changes weights and puts them
        back, as captum's LRP does) is no change: its new version is recorded, so it is read only once."""
        tensors = _tensor_state(classifier)
        if tensors == self.tensors:
            return False
        if len(tensors) != len(self.tensors):
            return True
        named = dict(_named_tensors(classifier))
        accepted = []
        for before, now in zip(self.tensors, tensors, strict=True):
            if before != now:
                index, name, identity, pointer, _ = before
                if now[:4] != (index, name, identity, pointer):
                    return True
                checksum = self.checksums.get((index, name))
                if checksum is None or _checksum(named[(index, name)]) != checksum:
                    return True
            accepted.append(now)
        self.tensors = tuple(accepted)
        return False


def _named_tensors(classifier: Classifier) -> list[tuple[tuple[int, str], torch.Tensor]]:
    """Every parameter and buffer of the classifier's modules by (module index, name), enumerated afresh:
    a replaced module or parameter is seen."""
    named = []
    for index, module in enumerate(classifier.torch_modules()):
        named += [((index, f"parameter {n}"), t) for n, t in module.named_parameters()]
        named += [((index, f"buffer {n}"), t) for n, t in module.named_buffers()]
    return named


def _tensor_state(classifier: Classifier) -> tuple[TensorState, ...]:
    """Each tensor of ``_named_tensors`` with what identifies its storage and its in-place version."""
    return tuple((i, name, id(t), t.data_ptr(), t._version) for (i, name), t in _named_tensors(classifier))


def _checksum(tensor: torch.Tensor) -> int | None:
    """CRC-32 of a tensor's bytes (copied to the CPU if need be), or None where they cannot be read (a
    meta or sparse tensor): whether a tensor changed in place holds what it held."""
    try:
        data = tensor.detach().reshape(-1).contiguous().cpu()
        return zlib.crc32(data.view(torch.uint8).numpy().data)
    except (RuntimeError, TypeError, ValueError):
        return None


def _tensor_change(before: tuple[TensorState, ...], after: tuple[TensorState, ...]) -> str:
    """The first difference between two tensor states, in words."""
    old = {(index, name): rest for index, name, *rest in before}
    new = {(index, name): rest for index, name, *rest in after}
    if old.keys() != new.keys():
        names = sorted(name for _, name in old.keys() ^ new.keys())
        return f"its {names[0]} was added or removed"
    for where, (identity, pointer, version) in old.items():
        now_identity, now_pointer, now_version = new[where]
        name = where[1]
        if now_identity != identity:
            return f"its {name} was replaced"
        if now_pointer != pointer:
            return f"the data of its {name} was replaced"
        if now_version != version:
            return f"its {name} was changed in place"
    return "the order of its parameters changed"


def _attributes_digest(classifier: Classifier) -> dict[str, object]:
    """A digest of each public attribute of the classifier that decides what it computes besides its
    modules' tensors: plain values, lists and dicts by value (a word model's vocabulary and token → id
    index), tensors by storage and version, a tokenizer by its vocabulary (``_tokenizer_digest``). Other
    objects are left out, as are private attributes (a prompt's lazily filled cache)."""
    try:
        items = vars(classifier).items()
    except TypeError:
        return {}
    digests = {}
    for name, value in items:
        if name.startswith("_") or isinstance(value, torch.nn.Module):
            continue
        digest = _digest(value)
        if digest is not None:
            digests[name] = digest
    return digests


def _digest(value) -> object:
    """A hashable digest of one attribute's value, or None for a value it does not cover."""
    if isinstance(value, str | bytes | int | float | bool | torch.device | torch.dtype):
        return value
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value), value.data_ptr(), value._version)
    if isinstance(value, dict):
        try:  # at C speed: a 30 522-entry vocabulary in about 5 ms
            return ("dict", hash(tuple(value.items())))
        except TypeError:
            return ("dict", hash(tuple((key, _digest(item)) for key, item in value.items())))
    if isinstance(value, list | tuple):
        try:
            return ("list", hash(tuple(value)))
        except TypeError:
            return ("list", hash(tuple(_digest(item) for item in value)))
    if hasattr(value, "get_vocab"):
        return _tokenizer_digest(value)
    return None


def _tokenizer_digest(tokenizer) -> object:
    """A Hugging Face tokenizer's state that decides the ids it gives: a fast one's added tokens and the
    serialised states of its normaliser, pre-tokeniser, model (the vocabulary), post-processor and
    decoder; a slow one's
    vocabulary dict by value; either's length and settings. Not a fast tokenizer's truncation and
    padding: every call sets them for itself (``set_truncation_and_padding``), so they change whenever
    an explainer calls the tokenizer with other arguments (lime and kernel-shap do) and decide nothing a
    later call gives."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if hasattr(backend, "get_added_tokens_decoder"):
        # the model's serialised state holds the vocabulary in id order (about 2 ms for 30 k tokens;
        # a set of get_vocab()'s items, whose order varies from call to call, costs 10 times as much)
        vocabulary = hash(tuple((i, str(t)) for i, t in sorted(backend.get_added_tokens_decoder().items())))
        components = tuple(
            _component_state(getattr(backend, n, None))
            for n in ("normalizer", "pre_tokenizer", "model", "post_processor", "decoder")
        )
    else:
        table = next(
            (
                getattr(tokenizer, n)
                for n in ("vocab", "encoder")
                if isinstance(getattr(tokenizer, n, None), dict)
            ),
            None,
        )
        vocabulary = hash(tuple((table if table is not None else tokenizer.get_vocab()).items()))
        components = ()
    settings = tuple(
        getattr(tokenizer, n, None) for n in ("model_max_length", "padding_side", "truncation_side")
    )
    return ("tokenizer", id(tokenizer), len(tokenizer), vocabulary, components, settings)


def _component_state(component) -> object:
    """A ``tokenizers`` component's serialised state (its JSON), or its type where it has none."""
    if component is None:
        return None
    try:
        return hash(component.__getstate__())
    except Exception:  # noqa: BLE001 - a component without a serialised state: its type only
        return type(component).__name__
