"""The model's own tokenizer, through llama.cpp, so training and serving tokenize alike."""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp

from agent.errors import ModelError


class LlamaTokenizer:
    """Tokenizer of a loaded llama_cpp.Llama (or a vocab-only load of a GGUF)."""

    def __init__(self, llm: llama_cpp.Llama, aliases: dict[str, str] | None = None):
        self._llm = llm
        # Names for control tokens the file calls otherwise (before export, <MB_k> is <unused{k}>).
        self._aliases = dict(aliases or {})
        self.vocab_size = llm.n_vocab()
        self.eos_id = llm.token_eos()
        self.bos_id = llm.token_bos()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        buf = (ctypes.c_char * 256)()
        pieces = []
        for token in range(self.vocab_size):
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
            pieces.append(buf[: max(n, 0)].decode("utf-8", errors="replace"))
        self._pieces = pieces

    @classmethod
    def from_file(cls, path: str | Path, aliases: dict[str, str] | None = None) -> "LlamaTokenizer":
        if not Path(path).is_file():
            raise ModelError(f"no model file at {path}")
        try:
            return cls(llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False), aliases)
        except ValueError as exc:
            raise ModelError(f"cannot read the tokenizer of {path}: {exc}") from None

    def encode(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def piece(self, token_id: int) -> str:
        return self._pieces[token_id]

    def token_id(self, name: str) -> int:
        name = self._aliases.get(name, name)
        ids = self._llm.tokenize(name.encode("utf-8"), add_bos=False, special=True)
        if len(ids) != 1:
            raise ModelError(f"the model has no single token {name!r}")
        return ids[0]
