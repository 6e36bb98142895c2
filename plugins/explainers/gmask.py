"""Word masks learned per example: IMASK (individual word masks, Chen & Ji 2020) and GMASK (word-group
masks for text pairs, Chen et al. 2021)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from pydantic import Field

from harness import (
    INTERNAL_BATCH_DOC,
    Classifier,
    Encoding,
    Explainer,
    ExplainerParams,
    Explanation,
    example_generators,
    rows_per_pass,
)
from plugins.explainers._gmask_masks import (
    TOKEN_WEIGHTS,
    MaskedInputs,
    Unselected,
    Words,
    example_words,
    gmask_objective,
    group_word_masks,
    gumbel_noise,
    imask_objective,
    masked_softmax,
    relaxed_bernoulli,
    relaxed_categorical,
    select_words,
    word_values_per_token,
)

GMASK_PAPER = (
    "Chen, Feng, Ganhotra, Wan, Gunasekara, Joshi & Ji 2021, Explaining Neural Network Predictions on "
    "Sentence Pairs via Learning Word-Group Masks (NAACL)"
)
IMASK_PAPER = (
    "Chen & Ji 2020, Learning Variational Word Masks to Improve the Interpretability of Neural Text "
    "Classifiers (EMNLP); as the IMASK baseline of " + GMASK_PAPER
)
_STRAIGHT_THROUGH_DOC = (
    "straight-through samples: hard 0/1 (one-hot) masks in the forward pass, so that every masked word is "
    "deleted, with the relaxed sample's gradient (the reference code's gumbel_softmax(hard=True)); false: "
    "the relaxed samples themselves (the paper's Appendix A)"
)


class IMaskParams(ExplainerParams):
    steps: int = Field(30, ge=1, description="Adam steps per example (reference code: 10; paper: not stated)")
    samples: int = Field(
        10, ge=1, description="mask samples per step, one forward/backward row each (reference code: 10)"
    )
    learning_rate: float = Field(0.1, gt=0, description="Adam learning rate (reference code: 0.1)")
    temperature: float = Field(
        0.5, gt=0, description="temperature τ of the binary Concrete (Gumbel-sigmoid) relaxation"
    )
    beta: float = Field(
        0.1,
        ge=0,
        description="weight β of the regulariser Σ_j KL(Bernoulli(p_j) ‖ Bernoulli(½)) (reference code: 0.1 "
        "for BERT, 1 for DAttn)",
    )
    straight_through: bool = Field(False, description=_STRAIGHT_THROUGH_DOC)
    internal_batch_size: int | None = Field(
        None, ge=1, description="masked rows (examples × samples): " + INTERNAL_BATCH_DOC
    )


class IMask(Explainer):
    """IMASK: a Bernoulli mask per word, learned per example; a word's score is its probability to be kept.

    Chen & Ji 2020 (VMASK) learn word masks R_j ~ Bernoulli(p_j) so that the masked input x̃ = R ⊙ x
    (word embeddings) keeps the prediction, under a KL regulariser towards the prior Bernoulli(½); Chen et
    al. 2021 (GMASK, §3.3) run it post hoc, per example, as the pre-filter of GMASK and as a baseline
    (IMASK). Here, per example and with the model frozen: one logit ℓ_j per word (p_j = σ(ℓ_j), ℓ = 0 at the
    start), ``samples`` binary-Concrete samples per step at temperature τ (Maddison et al. 2017), every
    sub-token of a word scaled by its word's sample R_j, in its word embedding and in its weight in the
    attention mask (the model's ``token-weights``: attention to the token and its share of the pooling
    scale with R_j, and R_j = 0 is the word's deletion, the removal of the metrics; special tokens and
    padding never: multiplier 1 / not read), and ``steps`` Adam steps on

        mean over samples of CE(ŷ, f(x̃)) + β Σ_j KL(Bernoulli(p_j) ‖ Bernoulli(½)),

    ŷ the explained class (the model's prediction on the full input by default). The score of every token of
    word j is E[R_j] = p_j; special tokens score 0.

    The regulariser is VMASK's KL to the prior (Chen & Ji 2020: p log p + (1 − p) log(1 − p) + log 2 per
    word), an information bottleneck: a word moves away from ½ only as far as the prediction needs it.
    Summed over words as in the GMASK reference code, so that its weight against the cross-entropy does not
    depend on the text's length. Deviations from the GMASK reference implementation (UVa-NLP/GMASK,
    ``WordMask``): that code penalises Σ_j p_j log p_j only (one half of the negative entropy), parametrises
    p_j = softmax(σ(r_j))₁ (which bounds p_j to [0.27, 0.73]), uses straight-through hard samples at τ = 1
    (``straight_through``; our default: the relaxed samples, τ = 0.5), and adds (1 − R_j)·(−10,000) to the
    attention scores of its keys, leaving positions as they are (here: log R_j, and the positions after a
    deleted word close up, so that R_j = 0 gives the model's output with the word deleted to float
    rounding; at R_j = 1 the two agree). Defaults: 30 steps × 10 samples (the reference: 10 × 10; the
    paper reports 0.6 s per example with BERT on a GPU); on minilm-head, 2 CPU cores, an MRPC pair (~55
    tokens) costs about 5 s. GMASK's pre-selection is this computation (``GMaskParams.imask_params``).

    Examples of a batch are optimised together, each with its own parameters (Adam is elementwise) and its
    own noise (``harness.example_generators``), so an example's scores do not depend on its batch.
    """

    name: ClassVar[str] = "imask"
    version: ClassVar[str] = "2"  # 2: masks weight the attention mask too (a mask of 0 deletes the word)
    Params = IMaskParams
    paper: ClassVar[str] = IMASK_PAPER
    requires: ClassVar[frozenset[str]] = frozenset({TOKEN_WEIGHTS})

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        words = example_words(encoding)
        values = self.word_values(
            classifier, encoding, targets, words, example_generators(self.seed, encoding)
        )
        return word_values_per_token(words, values, encoding.input_ids.shape).to(encoding.input_ids.device)

    def word_values(
        self,
        classifier: Classifier,
        encoding: Encoding,
        targets: torch.Tensor,
        words: Sequence[Words],
        generators: Sequence[torch.Generator],
    ) -> list[list[float]]:
        """Each example's p_j per word, the noise drawn from ``generators`` (one per example, fresh from
        ``example_generators(seed, encoding)`` for the scores of ``explain``)."""
        p = self.params
        return learn_word_masks(
            classifier, encoding, targets, words, generators,
            steps=p.steps, samples=p.samples, learning_rate=p.learning_rate, temperature=p.temperature,
            beta=p.beta, straight_through=p.straight_through, internal_batch_size=p.internal_batch_size,
        )  # fmt: skip


class GMaskParams(ExplainerParams):
    k: int = Field(10, ge=1, description="words pre-selected by IMASK for GMASK (paper: 10)")
    min_groups: int = Field(
        2,
        ge=1,
        description="the number of groups is t = max(min_groups, min(k1, k2)), k1 and k2 the selected words "
        "of each text (paper: t = min(k1, k2); reference code: max(2, ·) for BERT, min(k1, k2) for DAttn)",
    )
    steps: int = Field(50, ge=1, description="Adam steps at most (paper: at most 100 'epochs')")
    samples: int = Field(
        16,
        ge=1,
        description="mask samples per step, one forward/backward row each (paper: 100 to 1000; reference "
        "code: 500 for BERT)",
    )
    patience: int | None = Field(
        None,
        ge=1,
        description="stop an example early once its loss (Eq. 7, on that step's samples) has not improved "
        "on its best by 1e-4 for this many steps; null: always run every step",
    )
    learning_rate: float = Field(0.1, gt=0, description="Adam learning rate (paper: 0.1)")
    temperature: float = Field(0.5, gt=0, description="Gumbel-softmax temperature τ (paper: 0.5)")
    gamma1: float = Field(10.0, ge=0, description="γ1, weight of −(H(Z_U) + H(Z_L)) (paper: 10)")
    gamma2: float = Field(1.0, ge=0, description="γ2, weight of H(G) (paper: 1)")
    unselected: Unselected = Field(
        "deleted",
        description="what GMASK's model input holds of the words IMASK did not select: deleted (the input is "
        "[CLS] selected words of text 1 [SEP] selected words of text 2 [SEP], as in the reference code) or "
        "kept (as they are)",
    )
    straight_through: bool = Field(False, description=_STRAIGHT_THROUGH_DOC + "; the group stage")
    imask_steps: int = Field(
        IMaskParams.model_fields["steps"].default,
        ge=1,
        description="IMASK pre-selection: Adam steps (the imask explainer's default; reference code: 10)",
    )
    imask_samples: int = Field(
        IMaskParams.model_fields["samples"].default,
        ge=1,
        description="IMASK pre-selection: samples per step (the imask explainer's default; reference: 10)",
    )
    imask_learning_rate: float = Field(
        IMaskParams.model_fields["learning_rate"].default,
        gt=0,
        description="IMASK pre-selection: Adam learning rate",
    )
    imask_temperature: float = Field(
        IMaskParams.model_fields["temperature"].default,
        gt=0,
        description="IMASK pre-selection: temperature τ",
    )
    imask_beta: float = Field(
        IMaskParams.model_fields["beta"].default,
        ge=0,
        description="IMASK pre-selection: weight β of its KL regulariser",
    )
    imask_straight_through: bool = Field(
        IMaskParams.model_fields["straight_through"].default,
        description="IMASK pre-selection: " + _STRAIGHT_THROUGH_DOC,
    )
    internal_batch_size: int | None = Field(
        None, ge=1, description="masked rows (examples × samples), both stages: " + INTERNAL_BATCH_DOC
    )

    def imask_params(self) -> IMaskParams:
        """The parameters of the imask explainer whose computation the pre-selection is: with the
        defaults, the imask explainer's defaults, so that GMASK's k words are the imask baseline's top k
        (same seed, same batch) and GMASK vs IMASK compares only what the groups add."""
        return IMaskParams(
            steps=self.imask_steps,
            samples=self.imask_samples,
            learning_rate=self.imask_learning_rate,
            temperature=self.imask_temperature,
            beta=self.imask_beta,
            straight_through=self.imask_straight_through,
            internal_batch_size=self.internal_batch_size,
        )


class GMask(Explainer):
    """GMASK: words of a text pair learned into groups masked together; a word's score is its expected mask.

    Chen et al. 2021, §3. Per example, with the model frozen:

    1. Pre-selection (§3.3): IMASK scores every word: the very computation of the ``imask`` explainer with
       the parameters ``imask_*`` (``imask_params``; by default the imask explainer's defaults, 30 steps ×
       10 samples), the same seed and the same noise, so that on the same batch the IMASK values, and
       hence the selected words, are the imask baseline's exactly; the k words of highest IMASK value are
       selected, k1 of text 1 and k2 of text 2. In a pair where all k come from
       one text, the ⌊k/2⌋ (at least 1) best words of each text are selected instead (the reference code's
       rule). t = max(``min_groups``, min(k1, k2)) groups: the paper's t = min(k1, k2), at least 2 by
       default as the reference code has it for BERT, so that one group can be selected against another
       (with t = 1 every mask is 1 and nothing is learned). A single text (or a pair truncated to its first
       text) is explained the same way with its own top k words and t = ``min_groups`` groups; the H(Z_L)
       term is then 0.
    2. GMASK (Eq. 2–7): parameters Φ (k × t, φ_j = softmax of row j) and Ψ (t, ψ = softmax), uniform
       (1/t) at the start. Each step draws ``samples`` relaxed samples z_j ~ GumbelSoftmax(log φ_j, τ) and
       g ~ GumbelSoftmax(log ψ, τ) (Appendix A), word masks w_j = z_j · g, masked input w_j ⊙ x_j for every
       sub-token of selected word j, w_j also its weight in the attention mask (``token-weights``: w_j = 0
       deletes the word; special tokens: multiplier 1), and Adam takes a step on Eq. 7:

           mean over samples of CE(ŷ, f(x̃)) − γ1 (H(Z_U) + H(Z_L)) + γ2 H(G),

       φ_U (φ_L) the mean of φ_j over the selected words of text 1 (text 2) (Eq. 6), H the entropy (natural
       log), ŷ the explained class. Up to ``steps`` steps; with ``patience``, an example stops (keeping its
       parameters of that step) once its loss has not improved for that many steps.
    3. Attribution (Eq. 8): θ_j = Σ_ι φ_j(ι) ψ(ι) for selected words.

    Words IMASK did not select are ``deleted`` from GMASK's input by default, as in the reference code
    (UVa-NLP/GMASK, ``interpret``: the model reads [CLS] selected words of text 1 [SEP] selected words of
    text 2 [SEP]; it is also why GMASK's rows are short and cheap). The paper does not say; ``kept`` is the
    alternative.

    Output: ``scores`` of every token of a selected word 1 + θ_j (in (1, 2]); of a word not selected, its
    IMASK value (in (0, 1)): every selected word ranks above every other, which rank among themselves as
    IMASK ranks them (the reference code's final order). Special tokens score 0. ``groups``: each selected
    word's most probable group (argmax_ι φ_j(ι)) on all its tokens, -1 elsewhere; ``group_scores``: ψ,
    padded with NaN to the batch's largest t; ``extras["imask"]``: the IMASK scores.

    Deviations from the reference code, besides those of IMASK (see ``imask``): Φ and Ψ are plain softmax
    logits (the code squashes them with a sigmoid first, which bounds every probability ratio by e), φ_U and
    φ_L are means as in Eq. 6 (the code takes a softmax of the column sums), samples are relaxed unless
    ``straight_through`` (the code: hard, straight-through), w weights the attention mask as log w with the
    positions after a deleted word closed up (the code: (1 − w)·(−10,000), positions kept; both delete at
    w = 0 up to the positions), the learning rate is constant (the code: cosine annealing with a period of
    20 steps), the pre-selection runs IMASK's 30 steps by default (the code: 10; ``imask_steps``), and the
    scores are θ itself (the code ranks by softmax(θ), the same order). Budgets: the paper samples 100 to
    1000 masks per step for at most 100 steps (the reference code: 500 × 100 for BERT; 43 s per example on
    a GPU, Table 7); the defaults here are 50 steps × 16 samples after IMASK's 30 × 10 (before version 2:
    after 10 × 10, about 5 s per MRPC pair of ~55 tokens on minilm-head with 2 CPU cores; the larger
    pre-selection adds about the imask explainer's cost).

    Examples of a batch are optimised together, each with its own parameters and noise
    (``harness.example_generators``), so an example's result does not depend on its batch.
    """

    name: ClassVar[str] = "gmask"
    # 2: masks weight the attention mask too (a mask of 0 deletes the word); the pre-selection is the imask
    # explainer's computation, 30 steps by default (was 10)
    version: ClassVar[str] = "2"
    Params = GMaskParams
    paper: ClassVar[str] = GMASK_PAPER
    requires: ClassVar[frozenset[str]] = frozenset({"pairs", TOKEN_WEIGHTS})

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> Explanation:
        p = self.params
        words = example_words(encoding)
        generators = example_generators(self.seed, encoding)  # the imask explainer's, then GMASK's draws
        imask = IMask(p.imask_params(), seed=self.seed).word_values(
            classifier, encoding, targets, words, generators
        )
        selected = [
            select_words(values, example.text, p.k) for values, example in zip(imask, words, strict=True)
        ]
        groups = []
        for example, chosen in zip(words, selected, strict=True):
            counts = [sum(example.text[word] == text for word in chosen) for text in (0, 1)]
            groups.append(max(p.min_groups, min(counts)))
        phi, psi = learn_group_masks(classifier, encoding, targets, words, selected, groups, generators, p)
        return group_explanation(encoding, words, imask, selected, phi, psi)


def group_explanation(
    encoding: Encoding,
    words: Sequence[Words],
    imask: Sequence[Sequence[float]],
    selected: Sequence[Sequence[int]],
    phi: Sequence[torch.Tensor],
    psi: Sequence[torch.Tensor],
) -> Explanation:
    """GMASK's output from each example's IMASK values, selected words, φ (k × t) and ψ (t)."""
    shape = encoding.input_ids.shape
    values, group_of = [], []
    for example, row_imask, chosen, row_phi, row_psi in zip(words, imask, selected, phi, psi, strict=True):
        theta = (row_phi * row_psi[None, :]).sum(-1)
        row_values = [float(value) for value in row_imask]  # IMASK values are < 1
        row_groups = [-1] * example.count
        for j, word in enumerate(chosen):
            row_values[word] = 1.0 + float(theta[j])
            row_groups[word] = int(row_phi[j].argmax())
        values.append(row_values)
        group_of.append(row_groups)
    scores = word_values_per_token(words, values, shape)
    groups = word_values_per_token(words, [[g + 1 for g in row] for row in group_of], shape).long() - 1
    width = max([len(row) for row in psi] + [1])
    group_scores = torch.full((len(words), width), float("nan"))
    for row, row_psi in enumerate(psi):
        group_scores[row, : len(row_psi)] = row_psi
    device = encoding.input_ids.device
    return Explanation(
        scores.to(device),
        groups=groups.to(device),
        group_scores=group_scores.to(device),
        extras={"imask": word_values_per_token(words, imask, shape).to(device)},
    )


# -- the optimisation loops -----------------------------------------------------------------------------


def backward_cross_entropy(
    classifier: Classifier,
    inputs: MaskedInputs,
    masks: torch.Tensor,
    targets: torch.Tensor,
    internal_batch_size: int | None,
) -> torch.Tensor:
    """Back-propagates Σ_examples mean_samples CE(target, f(x̃)) into ``masks`` (B, S, U), through the
    masked word embeddings and the token weights of the attention mask, a pass of at most
    ``rows_per_pass`` rows at a time; returns the cross-entropies (B, S), detached."""
    batch, samples, _ = masks.shape
    embeds, attention, types = inputs.rows(masks)
    leaf = embeds.detach().requires_grad_(True)
    weights = attention.detach().requires_grad_(True)
    row_targets = targets.to(leaf.device).repeat_interleave(samples)
    values = []
    chunk = rows_per_pass(internal_batch_size, leaf.shape[1])
    for start in range(0, len(leaf), chunk):
        part = slice(start, start + chunk)
        logits = classifier.logits(
            inputs_embeds=leaf[part],
            attention_mask=weights[part],
            token_type_ids=None if types is None else types[part],
        )
        cross_entropy = torch.nn.functional.cross_entropy(logits.float(), row_targets[part], reduction="none")
        (cross_entropy.sum() / samples).backward()
        values.append(cross_entropy.detach())
    # The masks' graph serves the regularisers too. A model that ignores the weights leaves them no
    # gradient (None): only the embeddings' is passed back then.
    pairs = [(embeds, leaf.grad)] + ([(attention, weights.grad)] if weights.grad is not None else [])
    torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs], retain_graph=True)
    return torch.cat(values).view(batch, samples).cpu()


def _padded_noise(parts: Sequence[torch.Tensor], shape: tuple[int, ...], device) -> torch.Tensor:
    """Per-example noise tensors, each padded with zeros to ``shape`` (their leading dimensions first)."""
    noise = torch.zeros((len(parts), *shape))
    for row, part in enumerate(parts):
        noise[(row, *(slice(0, size) for size in part.shape))] = part
    return noise.to(device)


def learn_word_masks(
    classifier: Classifier,
    encoding: Encoding,
    targets: torch.Tensor,
    words: Sequence[Words],
    generators: Sequence[torch.Generator],
    *,
    steps: int,
    samples: int,
    learning_rate: float,
    temperature: float,
    beta: float,
    straight_through: bool,
    internal_batch_size: int | None,
) -> list[list[float]]:
    """IMASK: each example's p_j = σ(ℓ_j) per word after ``steps`` Adam steps (see ``IMask``)."""
    device = encoding.input_ids.device
    with torch.enable_grad():
        embeddings = classifier.input_embeddings(encoding.input_ids).detach()
        inputs = MaskedInputs.build(encoding, embeddings, words)
        width = max([example.count for example in words] + [1])
        valid = torch.zeros(len(words), width, dtype=torch.bool)
        for row, example in enumerate(words):
            valid[row, : example.count] = True
        valid = valid.to(device)
        logits = torch.zeros(len(words), width, device=device, requires_grad=True)
        optimizer = torch.optim.Adam([logits], lr=learning_rate)
        for _ in range(steps):
            optimizer.zero_grad()
            noise = [
                gumbel_noise(generator, (samples, example.count, 2))
                for generator, example in zip(generators, words, strict=True)
            ]
            noise = _padded_noise(noise, (samples, width, 2), device)
            masks = relaxed_bernoulli(logits[:, None, :], noise, temperature, straight_through)
            cross_entropy = backward_cross_entropy(classifier, inputs, masks, targets, internal_batch_size)
            terms = imask_objective(cross_entropy.to(device), logits, valid, beta)
            terms["loss"].sum().backward()  # the regulariser's gradient; the cross-entropy's is in already
            optimizer.step()
    probabilities = torch.sigmoid(logits.detach()).cpu()
    return [probabilities[row, : example.count].tolist() for row, example in enumerate(words)]


def learn_group_masks(
    classifier: Classifier,
    encoding: Encoding,
    targets: torch.Tensor,
    words: Sequence[Words],
    selected: Sequence[Sequence[int]],
    groups: Sequence[int],
    generators: Sequence[torch.Generator],
    p: GMaskParams,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """GMASK (Eq. 2–7): each example's φ (k × t) and ψ (t) after at most ``p.steps`` Adam steps."""
    device = encoding.input_ids.device
    batch = len(words)
    sizes = [len(chosen) for chosen in selected]
    width, depth = max(sizes + [1]), max(list(groups) + [1])
    word_text = torch.full((batch, width), -1, dtype=torch.long)
    group_valid = torch.zeros(batch, depth, dtype=torch.bool)
    for row, (example, chosen) in enumerate(zip(words, selected, strict=True)):
        word_text[row, : len(chosen)] = torch.tensor(
            [example.text[word] for word in chosen], dtype=torch.long
        )
        group_valid[row, : groups[row]] = True
    word_text, group_valid = word_text.to(device), group_valid.to(device)
    with torch.enable_grad():
        embeddings = classifier.input_embeddings(encoding.input_ids).detach()
        inputs = MaskedInputs.build(encoding, embeddings, words, selected, p.unselected)
        phi_logits = torch.zeros(batch, width, depth, device=device, requires_grad=True)
        psi_logits = torch.zeros(batch, depth, device=device, requires_grad=True)
        optimizer = torch.optim.Adam([phi_logits, psi_logits], lr=p.learning_rate)
        best = [float("inf")] * batch
        waited = [0] * batch
        final: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # examples stopped early
        for _ in range(p.steps):
            active = [row for row in range(batch) if row not in final]
            if not active:
                break
            index = torch.tensor(active, device=device)
            optimizer.zero_grad()
            phi, log_phi = masked_softmax(phi_logits[index], group_valid[index][:, None, :])
            psi, log_psi = masked_softmax(psi_logits[index], group_valid[index])
            z_noise, g_noise = [], []
            for row in active:
                z_noise.append(gumbel_noise(generators[row], (p.samples, sizes[row], groups[row])))
                g_noise.append(gumbel_noise(generators[row], (p.samples, groups[row])))
            z = relaxed_categorical(
                log_phi[:, None], _padded_noise(z_noise, (p.samples, width, depth), device),
                p.temperature, p.straight_through,
            )  # fmt: skip
            g = relaxed_categorical(
                log_psi[:, None], _padded_noise(g_noise, (p.samples, depth), device),
                p.temperature, p.straight_through,
            )  # fmt: skip
            masks = group_word_masks(z, g)
            cross_entropy = backward_cross_entropy(
                classifier, inputs.select(index), masks, targets[index], p.internal_batch_size
            )
            terms = gmask_objective(
                cross_entropy.to(device), phi, psi, word_text[index], group_valid[index], p.gamma1, p.gamma2
            )
            terms["loss"].sum().backward()  # the regularisers' gradients; the cross-entropy's is in already
            optimizer.step()
            if p.patience is None:
                continue
            for position, row in enumerate(active):
                loss = float(terms["loss"][position].detach())
                if loss < best[row] - 1e-4:
                    best[row], waited[row] = loss, 0
                else:
                    waited[row] += 1
                if waited[row] >= p.patience:
                    final[row] = (phi_logits[row].detach().clone(), psi_logits[row].detach().clone())
    phis, psis = [], []
    for row in range(batch):
        row_phi, row_psi = final.get(row, (phi_logits[row].detach(), psi_logits[row].detach()))
        valid = group_valid[row]
        phi, _ = masked_softmax(row_phi, valid[None, :])
        psi, _ = masked_softmax(row_psi, valid)
        phis.append(phi[: sizes[row], : groups[row]].cpu())
        psis.append(psi[: groups[row]].cpu())
    return phis, psis
