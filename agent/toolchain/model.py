"""The trainable model: the Gemma 3 base loaded from its GGUF, or a tiny random one of the same architecture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig


@dataclass(frozen=True)
class TinyConfig:
    """A randomly initialised gemma3 small enough for unit tests (dims multiples of 32 for Q4_0)."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    head_dim: int = 32
    seed: int = 0


def training_device() -> torch.device:
    """Where the toolchain trains: the GPU when torch sees one (an integrator's workstation), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def runs_bfloat16_natively(device: torch.device) -> bool:
    """Whether bfloat16 arithmetic is fast on device: a GPU that supports it, or a CPU with AVX-512 BF16
    or AMX. Elsewhere torch emulates it: a heal step with the teacher in bfloat16 took 5.8 s on an AVX2
    CPU against 0.53 s on an AVX-512 BF16 one."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported"))


def final_logit_cap(model) -> float | None:
    """The model's logit soft-cap (Gemma's final_logit_softcapping), None when it has none."""
    return getattr(model.config, "final_logit_softcapping", None)


def soft_cap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """logits squashed into (-cap, cap) as the model's own output layer does; unchanged without a cap.
    The stages that project hidden states themselves, on a restricted vocabulary, score through this
    so they train what llama.cpp will compute."""
    return torch.tanh(logits / cap) * cap if cap else logits


def load_base(gguf_path: str | Path) -> Gemma3ForCausalLM:
    """The base model in float32 (dequantized from the shipped GGUF), trainable."""
    path = Path(gguf_path)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    config.quantization_config = None  # a plain trainable model, not a GGUF-backed one
    model = Gemma3ForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    return model


def tiny_model(config: TinyConfig, vocab_size: int) -> Gemma3ForCausalLM:
    torch.manual_seed(config.seed)
    text_config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        query_pre_attn_scalar=config.head_dim,
        sliding_window=512,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    return Gemma3ForCausalLM(text_config)


def gguf_hparams(model: Gemma3ForCausalLM) -> dict[str, object]:
    """The gemma3.* GGUF keys that describe this model's shape."""
    c = model.config
    return {
        "gemma3.embedding_length": c.hidden_size,
        "gemma3.feed_forward_length": c.intermediate_size,
        "gemma3.attention.head_count": c.num_attention_heads,
        "gemma3.attention.head_count_kv": c.num_key_value_heads,
        "gemma3.attention.key_length": c.head_dim,
        "gemma3.attention.value_length": c.head_dim,
    }


def state_arrays(model: Gemma3ForCausalLM):
    """(name, numpy array) for every tensor to export; the output layer is tied to the embedding."""
    for name, tensor in model.state_dict().items():
        if name != "lm_head.weight":
            yield name, tensor.detach().to(torch.float32).cpu().numpy()


def shrink_vocabulary(model: Gemma3ForCausalLM, kept_ids: list[int]) -> None:
    """Keep only these embedding rows (the output layer is tied to them), in this order."""
    old = model.get_input_embeddings()
    rows = old.weight.detach()[torch.tensor(kept_ids)].clone()
    new = type(old)(len(kept_ids), rows.shape[1], padding_idx=old.padding_idx,
                    embed_scale=float(getattr(old, "scalar_embed_scale", 1.0)))
    with torch.no_grad():
        new.weight.copy_(rows)
    model.model.embed_tokens = new
    model.lm_head = torch.nn.Linear(rows.shape[1], len(kept_ids), bias=False)
    model.lm_head.weight = new.weight
    model.config.vocab_size = len(kept_ids)


def load_exported(model: Gemma3ForCausalLM, gguf_path: str | Path) -> None:
    """Load the float weights of a GGUF this toolchain exported (the cached fine-tune) into a model of
    the same shape, in place: the inverse of `state_arrays` + `gguf_io.write_gguf`."""
    import numpy as np
    from gguf import GGUFReader

    from agent.errors import ModelError
    from agent.toolchain.gguf_io import hf_to_gguf_name

    tensors = {t.name: t for t in GGUFReader(str(gguf_path)).tensors}
    state = {}
    for name, current in model.state_dict().items():
        if name == "lm_head.weight":  # tied to the embedding
            continue
        gguf_name = hf_to_gguf_name(name, model.config.num_hidden_layers)
        if gguf_name not in tensors:
            raise ModelError(f"{gguf_path} has no tensor {gguf_name}")
        array = np.array(tensors[gguf_name].data, dtype=np.float32)
        if array.size != current.numel():
            raise ModelError(f"{gguf_path}: {gguf_name} has {array.size} values, the model expects {current.numel()}")
        if gguf_name.endswith("norm.weight"):
            array = array - 1.0  # the export stored Gemma3RMSNorm's (1 + weight)
        state[name] = torch.from_numpy(array.reshape(current.shape))
    model.load_state_dict(state, strict=False)
