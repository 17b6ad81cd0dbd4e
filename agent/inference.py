"""The model at run time: a verified GGUF, loaded by llama.cpp, decoded greedily under the registry's constraints."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from agent import manifest, modelkeys
from agent.decoding import Call, CallCodec, functional_tokens
from agent.errors import DecodeError, ModelError
from agent.registry import Registry
from agent.textnorm import normalize
from agent.tokenizer import LlamaTokenizer

MAX_OUTPUT_TOKENS = 64


@dataclass(frozen=True)
class Decoded:
    text: str
    calls: list[Call]
    output_tokens: int
    prefill_ms: float
    decode_ms: float
    abstained: bool = False  # a function was likelier than "not a command", but not likely enough


class CommandModel:
    """One loaded model; not thread-safe (the daemon runs one inference at a time)."""

    def __init__(self, path: str | Path, registry: Registry, threads: int = 2, n_ctx: int = 256,
                 min_confidence: float = 0.0):
        self.path = Path(path)
        self.min_confidence = min_confidence
        self.sha256 = manifest.verify(self.path)
        try:
            self.llm = llama_cpp.Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=threads,
                                       n_threads_batch=threads, verbose=False)
        except ValueError as exc:
            raise ModelError(f"llama.cpp cannot load {self.path}: {exc}") from None
        self._check_function_map(registry)
        self.tokenizer = LlamaTokenizer(self.llm)
        self.codec = CallCodec(registry, self.tokenizer)
        self.threads = threads

    def _check_function_map(self, registry: Registry) -> None:
        raw = self.llm.metadata.get(modelkeys.FUNCTION_MAP)
        if raw is None:
            raise ModelError(f"{self.path} is not a vehicle-agent model (no {modelkeys.FUNCTION_MAP})")
        stored = json.loads(raw)
        expected = functional_tokens(registry)
        if stored != expected:
            differing = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
            raise ModelError(f"{self.path} was built for other protos: functional tokens differ at {', '.join(differing[:5])}")

    def set_threads(self, threads: int) -> None:
        llama_cpp.llama_set_n_threads(self.llm.ctx, threads, threads)
        self.threads = threads

    def warm_up(self) -> None:
        self.decode("turn on the air conditioning")

    def _logits(self) -> np.ndarray:
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.tokenizer.vocab_size,))

    def decode(self, text: str) -> Decoded:
        normal = normalize(text)
        prompt = [self.tokenizer.bos_id] + self.codec.prompt(normal)
        self.llm.reset()
        started = time.perf_counter()
        self.llm.eval(prompt)
        prefilled = time.perf_counter()
        decoder = self.codec.decoder()
        produced = 0
        abstained = False
        while not decoder.done and produced < MAX_OUTPUT_TOKENS:
            allowed = np.flatnonzero(decoder.allowed())
            logits = self._logits()[allowed]
            token = int(allowed[np.argmax(logits)])
            if produced == 0 and token != self.codec.none_id and self.min_confidence > 0:
                if _top_probability(logits) < self.min_confidence:  # unsure: doing nothing is safer
                    token, abstained = self.codec.none_id, True
            decoder.advance(token)
            produced += 1
            if not decoder.done:
                self.llm.eval([token])
        finished = time.perf_counter()
        if not decoder.done:  # never act on a cut-off call
            raise DecodeError(f"no complete answer within {MAX_OUTPUT_TOKENS} tokens for {normal!r}")
        return Decoded(normal, decoder.calls(), produced, (prefilled - started) * 1000, (finished - prefilled) * 1000,
                       abstained)


def _top_probability(logits: np.ndarray) -> float:
    shifted = np.exp(logits.astype(np.float64) - logits.max())
    return float(shifted.max() / shifted.sum())
