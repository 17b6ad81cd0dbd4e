"""The model at run time: a verified GGUF, loaded by llama.cpp, decoded greedily under the registry's constraints."""

from __future__ import annotations

import dataclasses
import json
import re
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
    abstained: bool = False  # the model proposed calls but was not sure enough of them: calls is []
    # What it would have done without abstaining (None: same as calls; empty when it stopped at an
    # unsure first token without decoding the arguments).
    proposed: list[Call] | None = None
    function_confidence: float = 1.0  # probability of the first token (which function, or none)
    argument_confidence: float = 1.0  # lowest probability of any later choice (values, further calls)

    @property
    def proposals(self) -> list[Call]:
        """What the model proposed, whether or not it was acted on."""
        return self.calls if self.proposed is None else self.proposed


def abstains(decoded: Decoded, min_confidence: float, min_argument_confidence: float) -> bool:
    """The abstention rule, shared by the daemon and the toolchain's evaluation: act only when the
    model is sure both of which function and of how (a coin-flip between "fold" and "unfold" is a
    wrong actuation half the time), and never on a number whose said decimals it dropped."""
    proposed = decoded.proposals
    return bool(proposed) and (decoded.function_confidence < min_confidence
                               or decoded.argument_confidence < min_argument_confidence
                               or drops_said_decimals(decoded.text, proposed))


_SAID_DECIMAL = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])")


def drops_said_decimals(text: str, calls: list[Call]) -> bool:
    """Whether a call carries a whole number where the text said that number with decimals
    ("tune to 104.4" decoded as 104.0): sure as the model may be, it would set a value nobody asked for.
    A decimal is not a gap the daemon may fill (it refuses, never guesses), so the command is abstained on."""
    whole_parts = {int(whole) for whole, decimals in _SAID_DECIMAL.findall(text) if int(decimals)}
    return any(isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
               and int(value) in whole_parts for call in calls for value in call.args.values())


class CommandModel:
    """One loaded model; not thread-safe (the daemon runs one inference at a time)."""

    def __init__(self, path: str | Path, registry: Registry, threads: int = 2, n_ctx: int = 256,
                 min_confidence: float = 0.0, min_argument_confidence: float = 0.0):
        self.path = Path(path)
        self.min_confidence = min_confidence
        self.min_argument_confidence = min_argument_confidence
        self.sha256 = manifest.verify(self.path)
        try:
            self.llm = llama_cpp.Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=threads,
                                       n_threads_batch=threads, verbose=False)
        except ValueError as exc:
            raise ModelError(f"llama.cpp cannot load {self.path}: {exc}") from None
        self._check_function_map(registry)
        self.tokenizer = LlamaTokenizer(self.llm)
        # a model records how its prompts were written; one from before the key wrote none
        leading_space = self.llm.metadata.get(modelkeys.PROMPT_LEADING_SPACE, "false").lower() in ("true", "1")
        self.codec = CallCodec(registry, self.tokenizer, leading_space)
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
        confidences: list[float] = []
        while not decoder.done and produced < MAX_OUTPUT_TOKENS:
            allowed = np.flatnonzero(decoder.allowed())
            logits = self._logits()[allowed]
            token = int(allowed[np.argmax(logits)])
            confidences.append(_top_probability(logits))
            if produced == 0 and token != self.codec.none_id and confidences[0] < self.min_confidence:
                break  # unsure which function: nothing more to learn by decoding on
            decoder.advance(token)
            produced += 1
            if not decoder.done:
                self.llm.eval([token])
        finished = time.perf_counter()
        stopped_early = produced == 0
        if not decoder.done and not stopped_early:  # never act on a cut-off call
            raise DecodeError(f"no complete answer within {MAX_OUTPUT_TOKENS} tokens for {normal!r}")
        proposed = [] if stopped_early else decoder.calls()
        decoded = Decoded(normal, proposed, max(produced, 1), (prefilled - started) * 1000,
                          (finished - prefilled) * 1000, proposed=proposed,
                          function_confidence=confidences[0], argument_confidence=min(confidences[1:], default=1.0))
        if stopped_early or abstains(decoded, self.min_confidence, self.min_argument_confidence):
            return dataclasses.replace(decoded, calls=[], abstained=True)
        return decoded


def _top_probability(logits: np.ndarray) -> float:
    shifted = np.exp(logits.astype(np.float64) - logits.max())
    return float(shifted.max() / shifted.sum())
