"""Stage: depth pruning by angular distance (the seed paper's method).

For every layer l and block size n, the angular distance between the hidden
states entering layer l and layer l+n, averaged over calibration tokens:
arccos(cosine similarity) / pi. The block of n layers whose input and output
are closest is the one that changes the residual stream least; it is removed.
Each kept layer keeps its attention type (sliding or global), which the
export writes as a per-layer pattern.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PruneConfig:
    remove: int = 0                 # blocks to remove (0: keep all)
    max_block: int = 8              # largest block size in the distance table
    calibration_examples: int = 256
    batch_size: int = 16
    # Prune the fine-tuned model and heal it by distilling its unpruned self (the fine-tune is shared by
    # every pruning), instead of pruning the base model before fine-tuning (the seed paper's order).
    after_finetune: bool = False


@torch.no_grad()
def angular_distances(model, batches, max_block: int) -> np.ndarray:
    """table[n, l]: mean angular distance between the inputs of layer l and layer l+n (NaN where l+n
    would reach the last layer's output, which the final norm changes)."""
    layers = model.config.num_hidden_layers
    total = np.zeros((max_block + 1, layers))
    count = 0.0
    for ids, mask in batches:
        ids, mask = ids.to(model.device), mask.to(model.device)
        hidden = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        weights = mask.to(torch.float64)
        states = [h.to(torch.float64) for h in hidden[:layers]]  # inputs of layers 0..L-1
        normed = [torch.nn.functional.normalize(h, dim=-1) for h in states]
        for n in range(1, max_block + 1):
            for l in range(0, layers - n):
                cos = (normed[l] * normed[l + n]).sum(-1).clamp(-1.0, 1.0)
                total[n, l] += float((torch.arccos(cos) / math.pi * weights).sum())
        count += float(weights.sum())
    table = total / max(count, 1.0)
    for n in range(0, max_block + 1):
        table[n, max(layers - n, 0):] = np.nan
    table[0, :] = np.nan
    return table


def choose_block(table: np.ndarray, n: int) -> int:
    """First layer of the n-layer block with the smallest distance."""
    row = table[n]
    if np.all(np.isnan(row)):
        raise ValueError(f"no block of {n} layers can be removed")
    return int(np.nanargmin(row))


def set_layer_stack(model, layers: list, layer_types: list[str]) -> None:
    """Make `layers` the model's decoder stack: the forward pass runs config.num_hidden_layers of
    model.model.layers, each with its config.layer_types entry's attention mask."""
    model.model.layers = torch.nn.ModuleList(layers)
    model.config.layer_types = list(layer_types)
    model.config.num_hidden_layers = len(layers)


@contextmanager
def running_blocks(model, start: int, stop: int | None = None, final_norm: bool = True):
    """For the duration, the forward pass runs only the blocks start..stop-1 (no KV cache may be used),
    from inputs_embeds taken as the hidden state entering block start. Without final_norm it returns
    the hidden state entering block stop, as the stack's own blocks would pass it on."""
    layers, types, norm = list(model.model.layers), list(model.config.layer_types), model.model.norm
    set_layer_stack(model, layers[start:stop], types[start:stop])
    if not final_norm:
        model.model.norm = torch.nn.Identity()
    try:
        yield
    finally:
        set_layer_stack(model, layers, types)
        model.model.norm = norm


def remove_layers(model, start: int, n: int) -> list[int]:
    """Remove layers start..start+n-1 in place; returns the kept original indices."""
    layers = list(model.model.layers)
    kept = [i for i in range(len(layers)) if not start <= i < start + n]
    types = list(model.config.layer_types)
    set_layer_stack(model, [layers[i] for i in kept], [types[i] for i in kept])
    for new_index, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new_index  # the KV cache is indexed by position in the stack
    return kept


def heatmap_png(table: np.ndarray, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    image = ax.imshow(table[1:], aspect="auto", cmap="viridis_r", origin="lower",
                      extent=(-0.5, table.shape[1] - 0.5, 0.5, table.shape[0] - 0.5))
    ax.set_xlabel("first layer of the block (l)")
    ax.set_ylabel("layers in the block (n)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="angular distance / pi")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
