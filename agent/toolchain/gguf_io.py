"""Reading the base GGUF and writing the agent's GGUF with gguf-py.

The written file keeps the base model's tokenizer and metadata, renames the
`<unusedN>` control tokens that serve as functional tokens to `<MB_k>`, writes
a per-layer sliding-window pattern (so that removing blocks cannot shift the
global-attention layers), and stores the agent's own metadata under
`vehicle_agent.*` (agent/modelkeys.py). Torch tensors come in as numpy arrays: no torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter, MODEL_ARCH, get_tensor_name_map

from agent.atomic import replacing

ARCH = "gemma3"
GLOBAL_ATTENTION_PERIOD = 6  # gemma3: every 6th layer attends globally
_SKIP_KEYS = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture", "general.file_type",
              f"{ARCH}.block_count", f"{ARCH}.attention.sliding_window_pattern", "tokenizer.ggml.tokens",
              "tokenizer.ggml.scores", "tokenizer.ggml.token_type"}


@dataclass
class BaseMetadata:
    """What the export keeps from the base GGUF."""

    fields: dict[str, tuple[GGUFValueType, Any, GGUFValueType | None]]  # key -> (type, value, array item type)
    tokens: list[str]
    scores: list[float]
    token_types: list[int]
    block_count: int
    swa_pattern: list[int]  # 1 = sliding-window layer, 0 = global


def read_base_metadata(path: str | Path) -> BaseMetadata:
    reader = GGUFReader(str(path))
    fields = {}
    for key, field in reader.fields.items():
        if key in _SKIP_KEYS or key.startswith("GGUF."):
            continue
        vtype = field.types[0]
        item = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        fields[key] = (vtype, field.contents(), item)
    blocks = int(reader.fields[f"{ARCH}.block_count"].contents())
    pattern_field = reader.fields.get(f"{ARCH}.attention.sliding_window_pattern")
    if pattern_field is None:
        pattern = [0 if (i % GLOBAL_ATTENTION_PERIOD) == GLOBAL_ATTENTION_PERIOD - 1 else 1 for i in range(blocks)]
    elif pattern_field.types[0] == GGUFValueType.ARRAY:
        pattern = [int(v) for v in pattern_field.contents()]
    else:
        period = int(pattern_field.contents())
        pattern = [0 if period and i % period == period - 1 else 1 for i in range(blocks)]
    return BaseMetadata(
        fields=fields,
        tokens=list(reader.fields["tokenizer.ggml.tokens"].contents()),
        scores=[float(s) for s in reader.fields["tokenizer.ggml.scores"].contents()],
        token_types=[int(t) for t in reader.fields["tokenizer.ggml.token_type"].contents()],
        block_count=blocks,
        swa_pattern=pattern,
    )


def hf_to_gguf_name(name: str, n_blocks: int) -> str:
    mapping = get_tensor_name_map(MODEL_ARCH.GEMMA3, n_blocks)
    stem, _, suffix = name.rpartition(".")
    mapped = mapping.get_name(stem)
    if mapped is None:
        raise KeyError(f"no GGUF name for tensor {name}")
    return f"{mapped}.{suffix}"


def write_gguf(
    path: str | Path,
    base: BaseMetadata,
    tensors: Iterable[tuple[str, np.ndarray]],
    *,
    block_count: int,
    swa_pattern: list[int],
    tokens: list[str],
    scores: list[float],
    token_types: list[int],
    metadata: dict[str, Any],
    dtype: str = "f32",
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Write a gemma3 GGUF from HF-named tensors (norm weights already in HF form)."""
    path = Path(path)
    with replacing(path) as tmp:
        writer = GGUFWriter(str(tmp), ARCH)
        for key, (vtype, value, item) in base.fields.items():
            if overrides and key in overrides:
                continue
            if vtype == GGUFValueType.ARRAY:
                writer.add_key_value(key, value, vtype, sub_type=item)
            else:
                writer.add_key_value(key, value, vtype)
        for key, value in (overrides or {}).items():
            _add_any(writer, key, value)
        writer.add_block_count(block_count)
        writer.add_key_value(f"{ARCH}.attention.sliding_window_pattern", [int(v) for v in swa_pattern],
                             GGUFValueType.ARRAY, sub_type=GGUFValueType.UINT32)
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(token_types)
        writer.add_file_type(1 if dtype == "f16" else 0)
        for key, value in metadata.items():
            _add_any(writer, key, value)
        for name, array in tensors:
            gguf_name = hf_to_gguf_name(name, block_count)
            data = np.ascontiguousarray(array)
            if gguf_name.endswith("norm.weight"):
                data = (data.astype(np.float32) + 1.0)  # Gemma3RMSNorm scales by (1 + weight)
            if data.ndim == 1 or dtype == "f32":
                data = data.astype(np.float32)
            else:
                data = data.astype(np.float16)
            writer.add_tensor(gguf_name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def set_metadata(path: str | Path, metadata: dict[str, Any]) -> Path:
    """Rewrite a GGUF (any tensor types) with these metadata values in place of its own, whole or not at all."""
    path = Path(path)
    reader = GGUFReader(str(path))
    arch = str(reader.fields["general.architecture"].contents())
    with replacing(path) as tmp:
        writer = GGUFWriter(str(tmp), arch)
        for key, field in reader.fields.items():
            if key in metadata or key == "general.architecture" or key.startswith("GGUF."):
                continue
            vtype = field.types[0]
            sub_type = field.types[-1] if vtype == GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), vtype, sub_type=sub_type)
        for key, value in metadata.items():
            _add_any(writer, key, value)
        for tensor in reader.tensors:
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                                   tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            writer.write_tensor_data(tensor.data)
        writer.close()
    return path


def _add_any(writer: GGUFWriter, key: str, value: Any) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value) if value >= 0 else writer.add_int32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        writer.add_string(key, json.dumps(value, sort_keys=True))
