"""Stage: fine-tune on (prompt ids, target ids) pairs, loss on the target tokens only.

The output layer is restricted to the token ids that occur in the data: the
262k-token output matrix is two thirds of every step otherwise, and the
decoder only ever allows those tokens where it matters (functional tokens,
argument names, values).
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

IGNORE = -100


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 600
    batch_size: int = 16
    learning_rate: float = 3e-4
    warmup_steps: int = 30
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 2
    max_length: int = 64
    # Train the whole embedding (a random tiny model must); the pretrained base
    # keeps it frozen and trains only the functional-token rows.
    train_embeddings: bool = False
    # 0: full fine-tune; otherwise LoRA of this rank on every linear layer, merged after training.
    lora_rank: int = 0
    lora_alpha: float = 32.0
    # Dropout on the LoRA branch's input: a regulariser against memorising the training templates.
    lora_dropout: float = 0.0
    # "element": peft's dropout, a fresh mask for every input feature at every position of every LoRA
    # module (its random numbers made steps 16 to 38% slower here); "sentence": one mask of features per
    # sentence and module, shared by the sentence's positions (SentenceDropout: about 3% slower).
    lora_dropout_shape: str = "element"
    # LoRA only on the blocks from this one up (0: every block). The blocks below then run without
    # gradient and the backward pass stops where LoRA starts; the functional tokens' rows still train
    # through the output layer, which shares them with the input embedding.
    lora_first_block: int = 0
    # Forward pass in bfloat16 (autocast; the LoRA weights, optimizer and loss stay float32): 1.44x
    # the steps per second on an AVX-512 BF16 CPU, but the default recipe lost accuracy with it (see there).
    bf16: bool = False


@dataclass(frozen=True)
class FinetuneStats:
    steps: int
    final_loss: float
    tokens_per_second: float
    seconds: float


def init_functional_rows(model, token_ids: list[int], descriptions: list[list[int]]) -> None:
    """Start each functional token's embedding at the mean embedding of words describing it."""
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        for token, words in zip(token_ids, descriptions):
            if words:
                emb[token] = emb[torch.tensor(words, device=emb.device)].mean(dim=0)


def _batch(pairs, vocab_index: dict[int, int], max_length: int, pad_id: int):
    rows = [(p + t)[:max_length] for p, t in pairs]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ((prompt, target), row) in enumerate(zip(pairs, rows)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        for j in range(len(prompt), len(row)):  # position j-1 predicts token j
            labels[i, j - 1] = vocab_index[row[j]]
    return ids, mask, labels


class FunctionalRows(torch.nn.Module):
    """Trainable embedding rows for the functional tokens over a frozen vocabulary.

    The 262k x 640 embedding (also the output layer) stays frozen: updating it
    whole every step costs more than the rest of the model. Only the rows of
    the functional tokens are trained, spliced into both the input embeddings
    and the restricted output layer, and written back after training.
    """

    def __init__(self, embedding: torch.nn.Embedding, token_ids: list[int], train_all: bool = False):
        super().__init__()
        self.embedding = embedding
        self.token_ids = torch.tensor(token_ids, device=embedding.weight.device)
        self.train_all = train_all
        # token id -> its trained row, -1 for every other token (all of them when the whole embedding trains)
        self._slot = torch.full((embedding.weight.shape[0],), -1, dtype=torch.long, device=embedding.weight.device)
        if not train_all:
            self._slot[self.token_ids] = torch.arange(len(token_ids), device=embedding.weight.device)
        self.rows = torch.nn.Parameter(embedding.weight[self.token_ids].detach().clone(), requires_grad=not train_all)
        embedding.weight.requires_grad_(train_all)

    def _splice(self, ids: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        slots = self._slot[ids]
        functional = slots >= 0
        if not functional.any():
            return base
        return torch.where(functional.unsqueeze(-1), self.rows[slots.clamp(min=0)], base)

    def inputs(self, ids: torch.Tensor) -> torch.Tensor:
        scale = getattr(self.embedding, "embed_scale", 1.0)
        return self._splice(ids, F.embedding(ids, self.embedding.weight)) * scale

    def output_matrix(self, vocab: torch.Tensor) -> torch.Tensor:
        return self._splice(vocab, self.embedding.weight[vocab])

    def write_back(self) -> None:
        if not self.train_all:
            with torch.no_grad():
                self.embedding.weight[self.token_ids] = self.rows.detach()


DROPOUT_SHAPES = ("element", "sentence")


class SentenceDropout(torch.nn.Module):
    """Dropout that drops the same features at every position of a sentence (input: batch, ..., features).

    It draws batch x features random numbers instead of one per element of the input, which on a CPU
    is most of the cost of dropout on every LoRA module's input."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


def _share_dropout_per_sentence(peft_model, p: float) -> None:
    """Swap peft's per-element dropout on every LoRA module's input for SentenceDropout."""
    swapped = 0
    for module in peft_model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for adapter in dropouts:
                dropouts[adapter] = SentenceDropout(p)
                swapped += 1
    if not swapped:  # a peft that keeps its dropout elsewhere: fail loudly rather than train without it
        raise RuntimeError("found no LoRA dropout modules to make per-sentence")


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def length_bucketed(pairs, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of indices of similar length (less padding), in random order."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    batches = []
    window = batch_size * 16
    for i in range(0, len(order), window):
        group = sorted(order[i:i + window], key=lambda k: len(pairs[k][0]) + len(pairs[k][1]))
        batches += [group[j:j + batch_size] for j in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def output_vocab(pairs: list[tuple[list[int], list[int]]], functional_ids: list[int]) -> list[int]:
    """The token ids the restricted output layer scores: every token of the pairs and every functional token."""
    return sorted({t for p, tg in pairs for t in p + tg} | set(functional_ids))


def answer_loss(hidden: torch.Tensor, labels: torch.Tensor, output_matrix: torch.Tensor,
                softcap: float | None = None) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens: hidden (batch, positions, features), labels (batch,
    positions) holding each position's next token's row of output_matrix, or IGNORE.

    Only the positions that predict an answer token reach the output layer: the same loss as scoring
    every position and ignoring the rest, without the prompt's share of the step's largest matrix
    product (a step of the default recipe 1 to 7% faster in four paired timings here: noisy)."""
    scored = labels != IGNORE
    logits = (hidden[scored] @ output_matrix.T).float()
    return F.cross_entropy(soft_cap(logits, softcap), labels[scored])


def trained_blocks(model, config: FinetuneConfig) -> list[int] | None:
    """The blocks LoRA adapts: None for every block, else those from config.lora_first_block up."""
    if not config.lora_first_block:
        return None
    if not config.lora_rank:  # a full fine-tune would leave the blocks below untrained without saying so
        raise ValueError("lora_first_block needs LoRA (lora_rank above 0)")
    if config.lora_first_block >= model.config.num_hidden_layers:
        raise ValueError(f"lora_first_block {config.lora_first_block} leaves none of the model's "
                         f"{model.config.num_hidden_layers} blocks to train")
    return list(range(config.lora_first_block, model.config.num_hidden_layers))


def last_hidden(model, inputs: torch.Tensor, mask: torch.Tensor, first_trained: int = 0) -> torch.Tensor:
    """The decoder's output for input embeddings; the blocks below first_trained (which train nothing)
    run without gradient, so back-propagation stops at first_trained."""
    if not first_trained:
        return model.model(inputs_embeds=inputs, attention_mask=mask, use_cache=False).last_hidden_state
    with torch.no_grad(), running_blocks(model, 0, first_trained, final_norm=False):
        entering = model.model(inputs_embeds=inputs, attention_mask=mask, use_cache=False).last_hidden_state
    with running_blocks(model, first_trained):
        return model.model(inputs_embeds=entering, attention_mask=mask, use_cache=False).last_hidden_state


def finetune(model, pairs: list[tuple[list[int], list[int]]], config: FinetuneConfig, functional_ids: list[int],
             pad_id: int = 0, progress: bool = True):
    """Train on pairs; returns the trained model (LoRA merged in) and statistics."""
    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    vocab = output_vocab(pairs, functional_ids)
    vocab_index = {t: i for i, t in enumerate(vocab)}
    device = model.device
    vocab_tensor = torch.tensor(vocab, device=device)
    peft_model = None
    if config.lora_rank:
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(model, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                                                      target_modules=LORA_TARGETS,
                                                      lora_dropout=config.lora_dropout,
                                                      layers_to_transform=trained_blocks(model, config)))
        if config.lora_dropout and config.lora_dropout_shape == "sentence":
            _share_dropout_per_sentence(peft_model, config.lora_dropout)
    rows = FunctionalRows(model.get_input_embeddings(), functional_ids, train_all=config.train_embeddings)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad] + ([] if config.train_embeddings else [rows.rows])
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / config.warmup_steps)
                                                 * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    softcap = final_logit_cap(model)
    started, tokens, loss_value = time.monotonic(), 0, float("nan")
    bar = tqdm(range(config.steps), desc="fine-tune", disable=not progress, unit="step",
               mininterval=0.5 if sys.stderr.isatty() else 15)
    queue: list[list[int]] = []
    for _ in bar:
        if not queue:
            queue = length_bucketed(pairs, config.batch_size, rng)
        batch = [pairs[k] for k in queue.pop()]
        ids, mask, labels = (t.to(device) for t in _batch(batch, vocab_index, config.max_length, pad_id))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            hidden = last_hidden(model, rows.inputs(ids), mask, config.lora_first_block)
            loss = answer_loss(hidden, labels, rows.output_matrix(vocab_tensor), softcap)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        tokens += int(mask.sum())
        loss_value = float(loss.detach())
        bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
    rows.write_back()
    if peft_model is not None:
        model = peft_model.merge_and_unload()
    for p in model.parameters():  # as it came: LoRA froze the base weights, FunctionalRows the embedding
        p.requires_grad_(True)
    model.eval()
    seconds = time.monotonic() - started
    return model, FinetuneStats(config.steps, loss_value, tokens / max(seconds, 1e-9), seconds)
