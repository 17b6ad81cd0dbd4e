"""Angular distance on a constructed model with a known answer, and layer removal."""

import numpy as np
import pytest
import torch

from agent.toolchain.model import TinyConfig, tiny_model
from agent.toolchain.prune import angular_distances, choose_block, remove_layers


@pytest.fixture(scope="module")
def model_with_identity_layers():
    torch.manual_seed(0)
    model = tiny_model(TinyConfig(num_hidden_layers=6), vocab_size=1000)
    with torch.no_grad():
        for i in (2, 3):  # no attention output and no MLP output: the layer passes its input through
            model.model.layers[i].self_attn.o_proj.weight.zero_()
            model.model.layers[i].mlp.down_proj.weight.zero_()
    return model


@pytest.fixture(scope="module")
def batches():
    torch.manual_seed(1)
    ids = torch.randint(5, 1000, (4, 16))
    return [(ids, torch.ones_like(ids))]


def test_identity_block_has_zero_distance_and_is_chosen(model_with_identity_layers, batches):
    table = angular_distances(model_with_identity_layers, batches, max_block=4)
    assert table[2, 2] == pytest.approx(0.0, abs=1e-6)
    assert table[1, 2] == pytest.approx(0.0, abs=1e-6) and table[1, 3] == pytest.approx(0.0, abs=1e-6)
    assert choose_block(table, 2) == 2
    assert choose_block(table, 1) in (2, 3)
    others = [v for l, v in enumerate(table[2]) if l != 2 and not np.isnan(v)]
    assert min(others) > 0.05  # real layers do move the residual stream
    assert np.isnan(table[1, 5])  # never measured through the last layer's normed output


def test_remove_layers_keeps_attention_types(batches):
    model = tiny_model(TinyConfig(num_hidden_layers=6), vocab_size=1000)
    types = list(model.config.layer_types)
    kept = remove_layers(model, 1, 2)
    assert kept == [0, 3, 4, 5]
    assert model.config.layer_types == [types[i] for i in kept]
    assert model.config.layer_types[-1] == "full_attention"
    assert model(input_ids=batches[0][0]).logits.shape == (4, 16, 1000)


def test_a_lora_fine_tuned_model_can_be_pruned_and_healed():
    """Fine-tuning with LoRA freezes the base weights; the model it returns must still heal after pruning
    (the default recipe's fresh build: fine-tune, prune, heal in one process)."""
    import copy

    from agent.toolchain.finetune import FinetuneConfig, finetune
    from agent.toolchain.heal import HealConfig, heal

    model = tiny_model(TinyConfig(num_hidden_layers=6), vocab_size=300)
    pairs = [([2, 10 + i, 20 + i, 30], [40 + i % 5, 1]) for i in range(16)]
    model, _ = finetune(model, pairs, FinetuneConfig(steps=3, batch_size=4, lora_rank=2), functional_ids=[40, 41],
                        progress=False)
    assert all(p.requires_grad for p in model.parameters())  # handed back as it came
    teacher = copy.deepcopy(model)
    for p in model.parameters():  # and heal does not rely on it
        p.requires_grad_(False)
    remove_layers(model, 2, 2)
    ids = torch.tensor([p + t for p, t in pairs[:8]])
    batch = (ids, torch.ones_like(ids), torch.ones(ids.shape), torch.zeros(ids.shape, dtype=torch.bool))
    stats = heal(model, teacher, [batch], [batch], torch.arange(300), HealConfig(steps=5, learning_rate=1e-3),
                 progress=False)
    assert stats.steps == 5 and stats.kl_after < stats.kl_before


def test_healing_with_labels_learns_the_true_answer_not_only_the_teacher():
    """label_weight adds the answer tokens' cross-entropy: a student healed with it predicts the true
    answers better than one that only copies a teacher which does not know them."""
    import copy

    import torch.nn.functional as F

    from agent.toolchain.heal import HealConfig, heal

    torch.manual_seed(3)
    teacher = tiny_model(TinyConfig(num_hidden_layers=4), vocab_size=300)  # random: it knows no answer
    ids = torch.tensor([[2, 10 + i, 20 + i, 40 + i % 3, 1] for i in range(8)])
    answers = torch.zeros(ids.shape, dtype=torch.bool)
    answers[:, 2] = True  # position 2 predicts the answer token at 3
    batch = (ids, torch.ones_like(ids), torch.ones(ids.shape), answers)

    def answer_loss(model):
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, 2]
        return float(F.cross_entropy(logits, ids[:, 3]))

    losses = {}
    for label_weight in (0.0, 4.0):
        student = copy.deepcopy(teacher)
        remove_layers(student, 1, 1)
        heal(student, teacher, [batch], [batch], torch.arange(300),
             HealConfig(steps=20, learning_rate=3e-3, label_weight=label_weight), progress=False)
        losses[label_weight] = answer_loss(student)
    assert losses[4.0] < losses[0.0] - 1.0, losses  # nats (the tiny model's logits are small: 5.7 -> 4.4)


def test_healing_in_bf16_lowers_the_divergence_and_keeps_float32_weights():
    import copy

    from agent.toolchain.heal import HealConfig, heal

    torch.manual_seed(5)
    teacher = tiny_model(TinyConfig(num_hidden_layers=4), vocab_size=300)
    ids = torch.randint(5, 300, (8, 12))
    batch = (ids, torch.ones_like(ids), torch.ones(ids.shape), torch.zeros(ids.shape, dtype=torch.bool))
    healed = {}
    for bf16 in (False, True):
        student = copy.deepcopy(teacher)
        remove_layers(student, 1, 2)
        stats = heal(student, teacher, [batch], [batch], torch.arange(300),
                     HealConfig(steps=15, learning_rate=3e-3, bf16=bf16), progress=False)
        assert stats.kl_after < stats.kl_before
        healed[bf16] = student
    assert {p.dtype for p in healed[True].parameters()} == {torch.float32}
    fp32_weights = dict(healed[False].named_parameters())
    assert any(not torch.equal(p, fp32_weights[n]) for n, p in healed[True].named_parameters())


def test_the_student_run_from_a_block_on_the_teachers_hidden_state_gives_its_own_logits():
    """Healing only the blocks from `first` on starts the student from the teacher's hidden state there:
    with the blocks below shared, that must be exactly the student's own forward pass."""
    import copy

    from agent.toolchain.heal import _logits, _student_logits

    torch.manual_seed(7)
    teacher = tiny_model(TinyConfig(num_hidden_layers=6), vocab_size=300)
    student = copy.deepcopy(teacher)
    remove_layers(student, 3, 2)  # the student's block 3 is the teacher's 5
    ids = torch.randint(5, 300, (4, 10))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding, as the batches have
    vocab = torch.arange(300)
    with torch.no_grad():
        whole = _logits(student, ids, mask, vocab)
        entering = teacher.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        for first in (1, 3):
            from_block = _student_logits(student, entering[first], mask, vocab, first)
            assert torch.allclose(from_block, whole, atol=1e-5), first
        assert not torch.allclose(_student_logits(student, entering[4], mask, vocab, 3), whole, atol=1e-3)
    assert student.config.num_hidden_layers == len(student.model.layers) == 4  # restored


def test_healing_the_blocks_near_the_cut_leaves_the_ones_below_untouched_and_still_heals():
    import copy

    from agent.toolchain.heal import HealConfig, heal

    torch.manual_seed(5)
    teacher = tiny_model(TinyConfig(num_hidden_layers=6), vocab_size=300)
    ids = torch.randint(5, 300, (8, 12))
    batch = (ids, torch.ones_like(ids), torch.ones(ids.shape), torch.zeros(ids.shape, dtype=torch.bool))
    student = copy.deepcopy(teacher)
    remove_layers(student, 3, 2)
    before = copy.deepcopy(student.state_dict())
    stats = heal(student, teacher, [batch], [batch], torch.arange(300),
                 HealConfig(steps=15, learning_rate=3e-3, blocks_before_cut=1), progress=False, cut=3)
    assert stats.first_trained_block == 2 and stats.kl_after < stats.kl_before
    after = student.state_dict()
    changed = {name.split(".")[2] for name in after
               if name.startswith("model.layers.") and not torch.equal(after[name], before[name])}
    assert changed == {"2", "3"}, changed  # the block before the cut and the one after it
    assert all(p.requires_grad for p in student.parameters())  # handed back trainable


def _answer_batch(seed: int):
    torch.manual_seed(seed)
    ids = torch.tensor([[2, 10 + i, 20 + i, 40 + i % 3, 1] for i in range(8)])
    answers = torch.zeros(ids.shape, dtype=torch.bool)
    answers[:, 2] = True  # position 2 predicts the answer token at 3
    return ids, (ids, torch.ones_like(ids), torch.ones(ids.shape), answers)


def test_the_label_only_loss_from_a_block_is_the_students_own_answer_cross_entropy():
    """kl_weight 0: the student starts from its own frozen blocks' output, and the loss is exactly the
    answer tokens' cross-entropy of its whole forward pass (no teacher involved)."""
    import copy

    import torch.nn.functional as F

    from agent.toolchain.heal import _columns, _logits, _loss

    torch.manual_seed(9)
    teacher = tiny_model(TinyConfig(num_hidden_layers=6), vocab_size=300)
    student = copy.deepcopy(teacher)
    remove_layers(student, 3, 2)
    ids, batch = _answer_batch(9)
    vocab = torch.arange(300)
    with torch.no_grad():
        expected = F.cross_entropy(_logits(student, ids, torch.ones_like(ids), vocab)[:, 2], ids[:, 3])
        for first in (0, 2):
            got = _loss(student, None, batch, vocab, 1.0, label_weight=1.0, columns=_columns(vocab), first=first,
                        kl_weight=0.0)
            assert torch.allclose(got, expected, atol=1e-5), (first, got, expected)
    assert student.config.num_hidden_layers == len(student.model.layers) == 4  # restored


def test_healing_on_the_labels_alone_never_runs_the_teacher_while_training():
    import copy

    import torch.nn.functional as F

    from agent.toolchain.heal import HealConfig, heal

    torch.manual_seed(3)
    teacher = tiny_model(TinyConfig(num_hidden_layers=4), vocab_size=300)
    ids, batch = _answer_batch(3)
    student = copy.deepcopy(teacher)
    remove_layers(student, 2, 1)
    calls = []
    teacher.model.register_forward_hook(lambda *_: calls.append(1))

    def answer_loss(model):
        with torch.no_grad():
            return float(F.cross_entropy(model(input_ids=ids).logits[:, 2], ids[:, 3]))

    before_loss, below = answer_loss(student), copy.deepcopy(student.model.layers[0].state_dict())
    heal(student, teacher, [batch], [batch], torch.arange(300),
         HealConfig(steps=20, learning_rate=3e-3, label_weight=1.0, kl_weight=0.0, blocks_before_cut=1),
         progress=False, cut=2)
    assert len(calls) == 2  # the divergence measured before and after, never in a training step
    assert answer_loss(student) < before_loss - 1.0
    assert all(torch.equal(v, below[k]) for k, v in student.model.layers[0].state_dict().items())


def test_healing_with_neither_divergence_nor_labels_is_refused():
    import copy

    from agent.toolchain.heal import HealConfig, heal

    teacher = tiny_model(TinyConfig(num_hidden_layers=3), vocab_size=300)
    _, batch = _answer_batch(0)
    with pytest.raises(ValueError, match="kl_weight or label_weight"):
        heal(copy.deepcopy(teacher), teacher, [batch], [batch], torch.arange(300),
             HealConfig(steps=5, kl_weight=0.0), progress=False)
