"""minilm-head with a trainable word-embedding layer and LDAV (locally distributed activation vectors)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import logits_of
from pydantic import ValidationError

from harness import CLASS_VECTORS, Example, PluginError, TextDataset, derive_seed, load_minilm_encoder
from plugins.models.minilm_head import MiniLMHead

CPU = torch.device("cpu")
FILLERS = [
    ("The morning train was", "and the station was quiet."),
    ("Our weekend trip felt", "from start to finish."),
    ("That old movie looked", "on the small screen."),
    ("The new cafe seemed", "to everyone at the table."),
]
WORDS = ("awful", "great")  # label 0 = negative, 1 = positive: one word decides the class
FAST = {"max_length": 16, "max_epochs": 2, "batch_size": 8}


def _split(prefix: str, n: int, offset: int) -> tuple[Example, ...]:
    examples = []
    for i in range(n):
        label = i % 2
        before, after = FILLERS[(i // 2 + offset) % len(FILLERS)]
        examples.append(Example(f"{prefix}-{i}", f"{before} {WORDS[label]} {after}", label))
    return tuple(examples)


def tiny_dataset() -> TextDataset:
    return TextDataset(
        name="tiny-ldav",
        labels=("negative", "positive"),
        train=_split("train", 24, 0),
        validation=_split("validation", 8, 1),
        test=_split("test", 8, 2),
    )


def build(dataset: TextDataset, variant: str = "default", **params):
    return MiniLMHead(MiniLMHead.Params(**{**FAST, **params})).build(
        dataset, seed=0, device=CPU, variant=variant
    )


@pytest.fixture(scope="module")
def dataset() -> TextDataset:
    return tiny_dataset()


@pytest.fixture(scope="module")
def ldav_model(dataset):
    return build(dataset, ldav=True, train_embeddings=True)


@pytest.fixture(scope="module")
def wheel_word_embeddings() -> torch.Tensor:
    return load_minilm_encoder().embeddings.word_embeddings.weight.detach().clone()


@pytest.mark.slow
def test_ldav_model_has_bounded_trained_class_vectors(ldav_model, wheel_word_embeddings):
    vectors = ldav_model.class_vectors()
    radius = float(ldav_model.ldav_vectors.radius)
    assert vectors.shape == (2, 384)
    assert not vectors.requires_grad
    assert torch.isfinite(vectors).all()
    assert (vectors.norm(dim=1) <= radius + 1e-5).all()
    # The default radius is 10 × the mean norm of the wheel's word embeddings, padding left out.
    assert radius == pytest.approx(10 * float(wheel_word_embeddings[1:].norm(dim=1).mean()), rel=1e-5)
    # Trained: not the vectors the model starts from (same init stream, same generator).
    initial = MiniLMHead(MiniLMHead.Params(**FAST, ldav=True, train_embeddings=True))._new_classifier(
        ldav_model.labels, CPU, init_seed=derive_seed(0, "init")
    )
    assert not torch.equal(initial.class_vectors(), vectors)


@pytest.mark.slow
def test_ldav_trains_the_word_embeddings_and_keeps_the_middle_layers_frozen(ldav_model):
    trained = ldav_model.network.encoder
    wheel = load_minilm_encoder()
    assert not torch.equal(trained.embeddings.word_embeddings.weight, wheel.embeddings.word_embeddings.weight)
    for name, weight in wheel.encoder.state_dict().items():  # unfreeze_layers = 0: every layer as shipped
        assert torch.equal(trained.encoder.state_dict()[name], weight), name
    assert not any(p.requires_grad for module in ldav_model.torch_modules() for p in module.parameters())
    assert not ldav_model.network.training and not ldav_model.ldav_vectors.training


@pytest.mark.slow
def test_ldav_training_report_has_the_ldav_facts(ldav_model):
    report = MiniLMHead().training_report(ldav_model)
    assert report["trained"] is True
    assert (report["ldav"], report["train_embeddings"]) == (True, True)
    assert (report["rho1"], report["rho2"]) == (1.0, 1.0)
    assert report["class_vector_radius"] == pytest.approx(float(ldav_model.ldav_vectors.radius), abs=1e-6)
    norms = ldav_model.class_vectors().norm(dim=1).tolist()
    assert report["class_vector_norms"] == pytest.approx(norms, abs=1e-6)
    terms = report["last_epoch_loss_terms"]
    assert set(terms) == {"l1", "l2", "l3"}
    assert all(math.isfinite(value) for value in terms.values())
    assert terms["l3"] > 0


@pytest.mark.slow
def test_ldav_save_then_load_gives_identical_logits_and_class_vectors(ldav_model, dataset, tmp_path):
    from safetensors.torch import load_file

    plugin = MiniLMHead(ldav_model.params)
    plugin.save(ldav_model, tmp_path)
    saved = load_file(str(tmp_path / "weights.safetensors"))
    assert {"ldav.vectors", "ldav.radius", "encoder.embeddings.word_embeddings.weight"} <= set(saved)
    loaded = plugin.load(tmp_path, dataset, CPU)
    assert torch.equal(logits_of(loaded, dataset.test), logits_of(ldav_model, dataset.test))
    assert torch.equal(loaded.class_vectors(), ldav_model.class_vectors())
    assert torch.equal(loaded.ldav_vectors.radius, ldav_model.ldav_vectors.radius)
    assert loaded.training_report == ldav_model.training_report


@pytest.mark.slow
def test_train_embeddings_without_ldav_is_the_control_model(dataset, tmp_path):
    control = build(dataset, train_embeddings=True, max_epochs=1)
    wheel = load_minilm_encoder().embeddings.word_embeddings.weight
    assert not torch.equal(control.network.encoder.embeddings.word_embeddings.weight, wheel)
    assert control.ldav_vectors is None
    with pytest.raises(PluginError, match="class vectors"):
        control.class_vectors()
    report = control.training_report
    assert (report["train_embeddings"], report["ldav"]) == (True, False)
    assert "last_epoch_loss_terms" not in report and "class_vector_norms" not in report
    keys = set(control.network.trainable_state(0, train_embeddings=True))
    assert "encoder.embeddings.word_embeddings.weight" in keys
    assert not any(key.startswith("ldav.") for key in keys)
    plugin = MiniLMHead(control.params)
    plugin.save(control, tmp_path)
    loaded = plugin.load(tmp_path, dataset, CPU)
    assert torch.equal(logits_of(loaded, dataset.test), logits_of(control, dataset.test))


@pytest.mark.slow
def test_untrained_ldav_variant_has_initialised_class_vectors(dataset):
    untrained = build(dataset, variant="untrained", ldav=True, train_embeddings=True)
    vectors = untrained.class_vectors()
    radius = float(untrained.ldav_vectors.radius)
    assert vectors.shape == (2, 384)
    assert torch.isfinite(vectors).all() and (vectors.norm(dim=1) <= radius + 1e-5).all()
    again = build(dataset, variant="untrained", ldav=True, train_embeddings=True)
    assert torch.equal(again.class_vectors(), vectors)  # drawn from the seeded init stream
    report = untrained.training_report
    assert (report["trained"], report["ldav"]) == (False, True)
    assert report["class_vector_radius"] == pytest.approx(radius, abs=1e-6)


def test_provides_class_vectors_only_with_ldav():
    always = frozenset({"attentions", "token-weights"})
    assert MiniLMHead.provides_for(MiniLMHead.Params()) == always
    assert MiniLMHead.provides_for(MiniLMHead.Params(train_embeddings=True)) == always
    with_ldav = MiniLMHead.provides_for(MiniLMHead.Params(ldav=True, train_embeddings=True))
    assert with_ldav == always | {CLASS_VECTORS}


def test_ldav_without_train_embeddings_is_a_validation_error():
    with pytest.raises(ValidationError, match="train_embeddings: true") as raised:
        MiniLMHead.Params(ldav=True)
    assert "ldav" in str(raised.value)


@pytest.mark.slow
def test_defaults_save_the_head_only():
    classifier = MiniLMHead()._new_classifier(("negative", "positive"), CPU, init_seed=0)
    assert classifier.ldav_vectors is None
    keys = set(classifier.network.trainable_state(classifier.params.unfreeze_layers))
    assert keys == {"head.fc1.weight", "head.fc1.bias", "head.fc2.weight", "head.fc2.bias"}
    with pytest.raises(PluginError, match="class vectors"):
        classifier.class_vectors()


@pytest.mark.slow
def test_ldav_fine_tuned_end_to_end_trains_every_layer_and_reloads_identically(dataset, tmp_path):
    """The transformer profile of suites/ldav.yaml: the paper fine-tunes its encoder "in an end-to-end
    fashion" (§4.4), so every encoder layer, the word embeddings, the head and the class vectors train,
    and the cache keeps all of them."""
    params = {"ldav": True, "train_embeddings": True, "unfreeze_layers": 6, "max_epochs": 1}
    classifier = build(dataset, **params)
    wheel = load_minilm_encoder().encoder
    for index, layer in enumerate(classifier.network.encoder.encoder.layer):
        shipped = wheel.layer[index].attention.self.query.weight
        assert not torch.equal(layer.attention.self.query.weight, shipped), f"layer {index} not trained"
    assert classifier.training_report["unfreeze_layers"] == 6
    model = MiniLMHead(MiniLMHead.Params(**{**FAST, **params}))
    model.save(classifier, tmp_path)
    loaded = model.load(tmp_path, dataset, CPU)
    assert torch.equal(logits_of(loaded, dataset.test), logits_of(classifier, dataset.test))
    assert torch.equal(loaded.class_vectors(), classifier.class_vectors())
