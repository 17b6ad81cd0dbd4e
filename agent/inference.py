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
from agent.received import received_key
from agent.registry import Registry
from agent.textnorm import normalize
from agent.tokenizer import LlamaTokenizer

MAX_OUTPUT_TOKENS = 64
# A choice less sure than this (or than the threshold it is held to, when one is set) has its likely
# alternatives completed, to count those the car would receive alike (_confidences); at most this
# many, each at least this probable. 0.95: the strictest threshold the toolchain's evaluation reports.
SAME_MEANING_BELOW = 0.95
SAME_MEANING_ALTERNATIVES = 2
SAME_MEANING_MIN_PROBABILITY = 0.1


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
    # Probability of the first choice (which function, or none), and the lowest of any later one (values,
    # further calls); each counts the likely other tokens that would send the car the same (_confidences).
    function_confidence: float = 1.0
    argument_confidence: float = 1.0

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
        self.codec = CallCodec(registry, self.tokenizer, modelkeys.prompt_leading_space(self.llm.metadata))
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
        # With a threshold set only the choices below it look for alternatives (the decision is the same
        # whatever a surer choice's alternatives mean); without, all that the evaluation's grid may need.
        branch_below = (self.min_confidence or SAME_MEANING_BELOW, self.min_argument_confidence or SAME_MEANING_BELOW)
        steps = self._greedy(decoder, branch_below, stop_below=self.min_confidence)
        stopped_early = steps[0].token is None
        if not decoder.done and not stopped_early:  # never act on a cut-off call
            raise DecodeError(f"no complete answer within {MAX_OUTPUT_TOKENS} tokens for {normal!r}")
        proposed = [] if stopped_early else decoder.calls()
        function_confidence, argument_confidence = ((steps[0].confidence, 1.0) if stopped_early
                                                    else self._confidences(prompt, steps, proposed))
        finished = time.perf_counter()
        decoded = Decoded(normal, proposed, max(len(steps) - stopped_early, 1), (prefilled - started) * 1000,
                          (finished - prefilled) * 1000, proposed=proposed,
                          function_confidence=function_confidence, argument_confidence=argument_confidence)
        if stopped_early or abstains(decoded, self.min_confidence, self.min_argument_confidence):
            return dataclasses.replace(decoded, calls=[], abstained=True)
        return decoded

    def _greedy(self, decoder, branch_below: tuple[float, float] | None = None, stop_below: float = 0.0) -> list[_Step]:
        """Decode greedily on from the model's state (the logits of its last evaluated token) and the
        decoder's. A step less sure than branch_below (first choice, later ones) keeps its likely
        alternatives. Stops before taking an unsure first function (below stop_below): that step's token is None."""
        steps: list[_Step] = []
        while not decoder.done and len(steps) < MAX_OUTPUT_TOKENS:
            allowed = np.flatnonzero(decoder.allowed())
            probabilities = _softmax(self._logits()[allowed])
            best = int(np.argmax(probabilities))
            token, confidence = int(allowed[best]), float(probabilities[best])
            alternatives = ()
            # not inside a text: another word there is another song or place, and a long one would
            # branch at every word
            if branch_below and confidence < branch_below[bool(steps)] and not decoder.writing_text:
                likely = np.argsort(-probabilities)[1:1 + SAME_MEANING_ALTERNATIVES]
                alternatives = tuple((int(allowed[k]), float(probabilities[k])) for k in likely
                                     if probabilities[k] >= SAME_MEANING_MIN_PROBABILITY)
            if not steps and token != self.codec.none_id and \
                    confidence + sum(p for _, p in alternatives) < stop_below:
                return [_Step(None, confidence)]  # unsure which function, whatever the others mean: stop here
            steps.append(_Step(token, confidence, alternatives))
            decoder.advance(token)
            if not decoder.done:
                self.llm.eval([token])
        return steps

    def _confidences(self, prompt: list[int], steps: list[_Step], calls: list[Call]) -> tuple[float, float]:
        """(function, argument) confidence: the probability of the first choice, and the lowest over
        the later ones, of what the car would receive.

        A choice's probability is its token's plus that of each likely other token whose greedy
        completion the car would receive alike: "window: driver" spelled out or left to its default,
        "max" or the top level written as a number, two calls in either order. Counting only the chosen
        spelling would abstain on commands the model is sure of, split between two ways of saying one thing."""
        if not calls:  # "not a command": every other first choice is some call
            return steps[0].confidence, 1.0
        meaning = received_key(self.codec.registry, calls)
        merged = []
        for i, step in enumerate(steps):
            confidence = step.confidence
            for token, probability in step.alternatives:
                other = self._completion(prompt, [s.token for s in steps[:i]] + [token])
                if other is not None and received_key(self.codec.registry, other) == meaning:
                    confidence += probability
            merged.append(confidence)
        return merged[0], min(merged[1:], default=1.0)

    def _completion(self, prompt: list[int], prefix: list[int]) -> list[Call] | None:
        """The calls greedy decoding gives after these output tokens (None: no complete answer)."""
        decoder = self.codec.decoder()
        for token in prefix:
            decoder.advance(token)
        if not decoder.done:
            self._evaluate(prompt + prefix)
        self._greedy(decoder)
        return decoder.calls() if decoder.done else None

    def _evaluate(self, tokens: list[int]) -> None:
        """Bring llama.cpp's state to these tokens, keeping the cache of the prefix they share with
        what it holds (an earlier branch may have left other tokens after the branching point)."""
        # the last token is evaluated even when held, for its logits
        shared = llama_cpp.Llama.longest_token_prefix(self.llm.input_ids[:self.llm.n_tokens], tokens[:-1])
        self.llm.n_tokens = shared  # llama.cpp drops the cache from here on before evaluating
        self.llm.eval(tokens[shared:])


@dataclass(frozen=True)
class _Step:
    token: int | None                                 # None: stopped before an unsure first function
    confidence: float                                 # the probability of the token taken
    alternatives: tuple[tuple[int, float], ...] = ()  # likely other tokens, for _confidences


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits.astype(np.float64) - logits.max())
    return shifted / shifted.sum()
