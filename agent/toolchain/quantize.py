"""Stage: quantize a GGUF with llama.cpp's own quantizer, and write its SHA-256 manifest."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from agent.atomic import replacing
from agent.errors import ModelError
from agent.manifest import write_manifest
from agent.toolchain.gguf_io import set_metadata

FTYPES = {"f16": 1, "q8_0": 7, "q4_0": 2, "q4_k_m": 15, "iq4_nl": 25}
GGML_TYPES = {"q8_0": 8, "q4_0": 2, "f16": 1}


@dataclass(frozen=True)
class QuantizeConfig:
    ftype: str = "q4_0"
    embedding_type: str = "q8_0"  # the token embedding, also the output matrix
    threads: int = 2


def quantize(src: str | Path, dst: str | Path, config: QuantizeConfig, metadata: dict | None = None) -> Path:
    """dst, quantized from src by llama.cpp, with `metadata` in place of src's values for those keys,
    and its SHA-256 manifest."""
    if config.ftype not in FTYPES:
        raise ModelError(f"unknown quantization {config.ftype!r} (known: {', '.join(FTYPES)})")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[config.ftype]
    params.nthread = config.threads
    if config.embedding_type:
        params.token_embedding_type = GGML_TYPES[config.embedding_type]
        params.output_tensor_type = GGML_TYPES[config.embedding_type]
    dst = Path(dst)
    with replacing(dst) as tmp:
        if llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params)) != 0:
            raise ModelError(f"llama.cpp could not quantize {src}")
        if metadata:
            set_metadata(tmp, metadata)
    write_manifest(dst)
    return dst
