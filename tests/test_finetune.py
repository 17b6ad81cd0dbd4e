"""Fine-tuning: the answer-only loss, bfloat16 autocast, LoRA dropout, the device it runs on."""

import torch
import torch.nn.functional as F

import pytest

from agent.toolchain.finetune import (IGNORE, LORA_TARGETS, FinetuneConfig, SentenceDropout, answer_loss, finetune,
                                     last_hidden, trained_blocks)
from agent.toolchain.model import TinyConfig, final_logit_cap, soft_cap, tiny_model

# Each prompt's answer is one of four tokens chosen by its second token: learnable in a few dozen steps.
PAIRS = [([2, 10 + i, 30], [40 + i % 4, 1]) for i in range(16)]


def _trained(steps: int = 60, **settings):
    """A tiny model fine-tuned on PAIRS from seed 0; settings are FinetuneConfig fields."""
    torch.manual_seed(0)
    model = tiny_model(TinyConfig(num_hidden_layers=2), vocab_size=100)
    config = FinetuneConfig(steps=steps, batch_size=8, learning_rate=3e-3, warmup_steps=5, train_embeddings=True,
                            **settings)
    return finetune(model, PAIRS, config, functional_ids=[40, 41, 42, 43], progress=False)


def _answer_accuracy(model) -> float:
    ids = torch.tensor([p for p, _ in PAIRS])
    with torch.no_grad():
        predicted = model(input_ids=ids).logits[:, -1].argmax(-1)
    return float((predicted == torch.tensor([t[0] for _, t in PAIRS])).float().mean())


def test_bf16_fine_tune_learns_the_answers_and_keeps_float32_weights():
    untrained = tiny_model(TinyConfig(num_hidden_layers=2), vocab_size=100)
    model, stats = _trained(bf16=True)
    assert stats.final_loss < 0.5  # from about ln(vocabulary) = 3.8
    assert _answer_accuracy(model) == 1.0 > _answer_accuracy(untrained)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_bf16_changes_the_arithmetic_not_the_outcome():
    fp32_model, _ = _trained(bf16=False)
    bf16_model, _ = _trained(bf16=True)
    fp32_weights = dict(fp32_model.named_parameters())
    assert any(not torch.equal(p, fp32_weights[name]) for name, p in bf16_model.named_parameters())
    assert _answer_accuracy(fp32_model) == _answer_accuracy(bf16_model) == 1.0


def test_training_goes_to_the_gpu_when_torch_sees_one(monkeypatch):
    from agent.toolchain.model import training_device

    assert training_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device() == torch.device("cpu")


def _lora_trained(dropout: float, shape: str = "element"):
    return _trained(steps=80, lora_rank=8, lora_dropout=dropout, lora_dropout_shape=shape)[0]


def test_lora_dropout_regularises_the_training_yet_it_still_learns_the_answers():
    plain, dropped, again = _lora_trained(0.0), _lora_trained(0.3), _lora_trained(0.3)
    plain_weights, again_weights = dict(plain.named_parameters()), dict(again.named_parameters())
    assert any(not torch.equal(p, plain_weights[name]) for name, p in dropped.named_parameters())  # the setting acts
    assert all(torch.equal(p, again_weights[name]) for name, p in dropped.named_parameters())  # from the seed alone
    assert _answer_accuracy(plain) == _answer_accuracy(dropped) == 1.0


def test_sentence_dropout_drops_the_same_features_at_every_position_of_a_sentence():
    torch.manual_seed(0)
    dropout = SentenceDropout(0.5).train()
    out = dropout(torch.ones(4, 7, 64))
    assert set(out.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    assert torch.equal(out, out[:, :1].expand_as(out))  # one mask per sentence, the same at each position
    assert not torch.equal(out[0], out[1])  # each sentence draws its own
    x = torch.randn(2, 3, 8)
    assert torch.equal(dropout.eval()(x), x)


def test_per_sentence_lora_dropout_is_a_different_regulariser_that_still_learns():
    element, sentence, again = _lora_trained(0.3), _lora_trained(0.3, "sentence"), _lora_trained(0.3, "sentence")
    element_weights, again_weights = dict(element.named_parameters()), dict(again.named_parameters())
    assert any(not torch.equal(p, element_weights[name]) for name, p in sentence.named_parameters())
    assert all(torch.equal(p, again_weights[name]) for name, p in sentence.named_parameters())
    assert _answer_accuracy(sentence) == 1.0


def test_answer_loss_equals_scoring_every_position_and_ignoring_the_prompt():
    """Scoring only the answer's positions is a saving, not a change: same loss, same gradients."""
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 16, requires_grad=True)
    matrix = torch.randn(50, 16, requires_grad=True)
    labels = torch.full((3, 7), IGNORE)
    labels[0, 4:6], labels[1, 2:6], labels[2, 6] = torch.tensor([3, 9]), torch.tensor([0, 49, 7, 7]), 12
    softcap = 5.0

    loss = answer_loss(hidden, labels, matrix, softcap)
    grads = torch.autograd.grad(loss, (hidden, matrix))
    every = torch.tanh((hidden @ matrix.T) / softcap) * softcap
    reference = F.cross_entropy(every.reshape(-1, 50), labels.reshape(-1), ignore_index=IGNORE)
    reference_grads = torch.autograd.grad(reference, (hidden, matrix))

    torch.testing.assert_close(loss, reference)
    for got, want in zip(grads, reference_grads):
        torch.testing.assert_close(got, want)
    assert grads[0][labels == IGNORE].abs().sum() == 0  # the prompt's positions get no gradient from the loss


def test_soft_cap_bounds_logits_as_the_models_output_layer_and_is_identity_without_a_cap():
    logits = torch.tensor([-100.0, -1.0, 0.0, 1.0, 100.0])
    assert torch.equal(soft_cap(logits, None), logits)
    capped = soft_cap(logits, 30.0)
    assert capped.abs().max() < 30.0 and capped[2] == 0.0
    assert torch.allclose(capped[1:4], logits[1:4], atol=1e-3)  # nearly linear near zero
    model = tiny_model(TinyConfig(), vocab_size=64)
    assert final_logit_cap(model) == model.config.final_logit_softcapping


def _block_of(name: str) -> int:
    """The decoder block a parameter name belongs to ("...layers.3.mlp..." -> 3)."""
    return int(name.split("layers.")[1].split(".")[0])


def _lora_blocks(model) -> set[int]:
    return {_block_of(name) for name, _ in model.named_parameters() if "lora_" in name}


def test_lora_from_an_upper_block_gives_the_same_output_and_gradients_and_stops_backward_there():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = tiny_model(TinyConfig(num_hidden_layers=4), vocab_size=100)
    config = FinetuneConfig(lora_rank=4, lora_first_block=2)
    assert trained_blocks(model, config) == [2, 3]
    get_peft_model(model, LoraConfig(r=4, target_modules=LORA_TARGETS, layers_to_transform=trained_blocks(model, config),
                                     init_lora_weights=False))  # random LoRA weights, so they act
    assert _lora_blocks(model) == {2, 3}
    ids = torch.tensor([p + t for p, t in PAIRS[:4]])
    inputs, mask = model.model.embed_tokens(ids).detach(), torch.ones_like(ids)
    inputs.requires_grad_(True)
    results = []
    for first in (0, 2):
        hidden = last_hidden(model, inputs, mask, first)
        model.zero_grad()
        inputs.grad = None
        hidden.square().mean().backward()
        results.append((hidden.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if "lora_" in n},
                        inputs.grad))
    (every, every_grads, every_input_grad), (split, split_grads, split_input_grad) = results
    assert torch.allclose(every, split, atol=1e-5)
    assert every_grads.keys() == split_grads.keys()
    assert all(torch.allclose(every_grads[n], split_grads[n], atol=1e-6) for n in every_grads)
    assert every_input_grad is not None and split_input_grad is None  # nothing flowed below block 2
    assert len(model.model.layers) == 4 and model.model.norm.__class__.__name__ != "Identity"  # restored


def test_fine_tune_with_lora_from_an_upper_block_learns_and_leaves_the_blocks_below_unchanged():
    untouched = tiny_model(TinyConfig(num_hidden_layers=2), vocab_size=100)
    model, stats = _trained(steps=120, lora_rank=8, lora_first_block=1)
    before, after = dict(untouched.named_parameters()), dict(model.named_parameters())
    changed = {_block_of(n) for n, p in after.items() if "layers." in n and not torch.equal(p, before[n])}
    assert changed == {1}
    assert stats.final_loss < 1.0


def test_lora_first_block_must_leave_a_block_to_train():
    model = tiny_model(TinyConfig(num_hidden_layers=2), vocab_size=100)
    with pytest.raises(ValueError, match="leaves none of the model's 2 blocks"):
        trained_blocks(model, FinetuneConfig(lora_rank=4, lora_first_block=2))


def test_lora_first_block_without_lora_is_refused_by_the_stage_itself():
    """A full fine-tune would train nothing below the block and not say so (the recipe loader refuses
    it too, but the stage may be called without a recipe)."""
    model = tiny_model(TinyConfig(num_hidden_layers=2), vocab_size=100)
    with pytest.raises(ValueError, match="needs LoRA"):
        trained_blocks(model, FinetuneConfig(lora_rank=0, lora_first_block=1))
