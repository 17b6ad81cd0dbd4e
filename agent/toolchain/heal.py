"""Stage: heal a pruned model by distilling the unpruned one into it, on text the project ships.

The student learns to match the teacher's next-token distribution (KL
divergence over the tokens the text uses): nothing is downloaded. Pruned
before fine-tuning, the teacher is the base model and the text is the command
sentences and negatives the templates generate; pruned after fine-tuning, the
teacher is the fine-tuned model and the text is the training pairs, the
positions that predict the answer weighted up (`answer_weight`), and the
student may also learn the true answer itself (`label_weight`: cross-entropy
on the answer tokens), so it is not bound to copy the teacher's mistakes.

With `blocks_before_cut` the heal trains only the blocks next to the cut: the
last few before the removed span and every one after it. The blocks below stay
the teacher's own, so the teacher's pass through them serves both models and
the student runs (and back-propagates through) only the rest.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from agent.toolchain.model import final_logit_cap, soft_cap
from agent.toolchain.prune import running_blocks


@dataclass(frozen=True)
class HealConfig:
    steps: int = 0               # 0: no healing
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup_steps: int = 0
    temperature: float = 1.0
    answer_weight: float = 5.0   # pruned after fine-tuning: weight of the answer positions against the prompt's
    label_weight: float = 0.0    # pruned after fine-tuning: weight of the true answer's cross-entropy against the KL
    # Weight of the KL to the teacher. 0 (with label_weight above 0): heal on the true answers alone; a step
    # then skips the teacher's pass, and the student runs its own frozen blocks below the trained ones.
    kl_weight: float = 1.0
    seed: int = 0
    threads: int = 2
    bf16: bool = False           # forward passes in bfloat16 autocast, as finetune.bf16
    teacher_bf16: bool = False   # only the teacher's forward pass (no gradient flows through it) in bfloat16
    # (both bfloat16 settings apply only where the device computes bfloat16 natively: build.native_precision)
    # Train only this many blocks before the cut (and every block after it); None: every block. The frozen
    # blocks below stay equal to the teacher's, so their pass is computed once, by the teacher, and the
    # student neither runs nor back-propagates through them.
    blocks_before_cut: int | None = None


@dataclass(frozen=True)
class HealStats:
    steps: int
    kl_before: float
    kl_after: float
    seconds: float
    first_trained_block: int = 0


def _logits(model, ids, mask, vocab):
    return _project(model, model.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state,
                    vocab)


def _student_logits(student, entering, mask, vocab, first: int):
    """The student's logits from `entering`, the hidden state that enters its block `first`."""
    with running_blocks(student, first):
        hidden = student.model(inputs_embeds=entering, attention_mask=mask, use_cache=False).last_hidden_state
    return _project(student, hidden, vocab)


def _project(model, hidden, vocab):
    return soft_cap(hidden @ model.get_input_embeddings().weight[vocab].T, final_logit_cap(model))


def _columns(vocab: torch.Tensor) -> torch.Tensor:
    """Token id -> its column in the vocabulary-restricted logits."""
    columns = torch.zeros(int(vocab.max()) + 1, dtype=torch.long, device=vocab.device)
    columns[vocab] = torch.arange(len(vocab), device=vocab.device)
    return columns


def _loss(student, teacher, batch, vocab, temperature, label_weight=0.0, columns=None, bf16=False, first=0,
          teacher_bf16=False, kl_weight=1.0):
    """kl_weight times the weighted KL from teacher to student, plus label_weight times the cross-entropy
    of the answer tokens (columns: _columns(vocab), needed only then).

    batch is (ids, mask, weights, answers): how much each position's KL counts, and which positions
    predict an answer token (the next one in ids). The student's blocks below `first` must equal the
    teacher's: the student starts from the hidden state computed there (by the teacher's pass, or
    without a KL term by its own blocks, without gradient)."""
    device = vocab.device
    ids, mask, weights, answers = (t.to(device) for t in batch)

    def autocast(enabled: bool):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    entering = None
    if kl_weight:
        with torch.no_grad(), autocast(bf16 or teacher_bf16):
            out = teacher.model(input_ids=ids, attention_mask=mask, output_hidden_states=bool(first),
                                use_cache=False)
            teacher_logits = _project(teacher, out.last_hidden_state, vocab)
        if first:
            entering = out.hidden_states[first].float()
    elif first:
        with torch.no_grad(), autocast(bf16), running_blocks(student, 0, first, final_norm=False):
            entering = student.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state.float()
    with autocast(bf16):
        if first:
            logits = _student_logits(student, entering, mask, vocab, first)
        else:
            logits = _logits(student, ids, mask, vocab)
    logits = logits.float()
    loss = logits.sum() * 0.0  # a batch with nothing to learn (no KL, no answer) changes nothing
    if kl_weight:
        target = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
        pred = F.log_softmax(logits / temperature, dim=-1)
        loss = kl_weight * ((target.exp() * (target - pred)).sum(-1) * weights).sum() / weights.sum()
    if label_weight and answers.any():
        predicting = answers[:, :-1]
        chosen = F.log_softmax(logits[:, :-1][predicting], dim=-1)
        loss = loss + label_weight * F.nll_loss(chosen, columns[ids[:, 1:][predicting]])
    return loss


@torch.no_grad()
def mean_kl(student, teacher, batches, vocab, temperature=1.0) -> float:
    values = [float(_loss(student, teacher, batch, vocab, temperature)) for batch in batches]
    return sum(values) / max(len(values), 1)


def first_trained_block(config: HealConfig, cut: int) -> int:
    """The student's first block the heal trains, given the cut: the student's first block after the
    removed span (the blocks before it are the teacher's own)."""
    if config.blocks_before_cut is None:
        return 0
    return max(0, cut - config.blocks_before_cut)


def heal(student, teacher, batches: list, held_out: list, vocab: torch.Tensor, config: HealConfig,
         progress: bool = True, cut: int = 0) -> HealStats:
    """Train student in place towards teacher; batches are (ids, mask, weights, answers), see _loss.
    cut: the student's first block after the removed span; its blocks before it are the teacher's."""
    if config.steps and not (config.kl_weight or config.label_weight):
        raise ValueError("healing needs kl_weight or label_weight above 0: with neither it learns nothing")
    torch.set_num_threads(config.threads)
    first = first_trained_block(config, cut)
    rng = random.Random(config.seed)
    vocab = vocab.to(student.device)  # the batches follow it there
    teacher.eval()
    student.eval()
    before = mean_kl(student, teacher, held_out, vocab, config.temperature)
    started = time.monotonic()
    if config.steps:
        for p in student.parameters():  # a model just fine-tuned with LoRA comes with its layers frozen
            p.requires_grad_(True)
        emb = student.get_input_embeddings().weight
        emb.requires_grad_(False)  # the vocabulary stays as it is; the layers heal
        frozen = [p for layer in list(student.model.layers)[:first] for p in layer.parameters()]
        for p in frozen:
            p.requires_grad_(False)
        params = [p for p in student.parameters() if p.requires_grad]
        columns = _columns(vocab)  # built once, not on every step
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / max(config.warmup_steps, 1))
            * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
        student.train()
        bar = tqdm(range(config.steps), desc="heal", disable=not progress, unit="step",
                   mininterval=0.5 if sys.stderr.isatty() else 15)
        order: list[int] = []
        for _ in bar:
            if not order:  # every batch once before any twice
                order = list(range(len(batches)))
                rng.shuffle(order)
            loss = _loss(student, teacher, batches[order.pop()], vocab, config.temperature, config.label_weight,
                         columns, config.bf16, first, config.teacher_bf16, config.kl_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
        student.eval()
        for p in [emb, *frozen]:
            p.requires_grad_(True)
    after = mean_kl(student, teacher, held_out, vocab, config.temperature)
    return HealStats(config.steps, before, after, time.monotonic() - started, first)
