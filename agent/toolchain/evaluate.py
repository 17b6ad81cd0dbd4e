"""Stage: evaluate a built GGUF on held-out examples, decoded with llama.cpp as the daemon decodes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agent.errors import DecodeError
from agent.registry import Registry

MAX_LISTED_MISSES = 200  # enough to see the patterns; the report stays readable
# Abstention thresholds the report also scores (function, argument): what each costs and saves.
THRESHOLD_GRID = tuple((f, a) for f in (0.0, 0.5, 0.7, 0.9, 0.95) for a in (0.0, 0.3, 0.5, 0.7, 0.9))


def evaluate(model_path: Path, registry: Registry, examples) -> dict:
    """Held-out exact match, false actuations (acting on a negative) and wrong actuations (acting
    otherwise than asked), decoded as the daemon decodes, with the daemon's default abstention
    thresholds; also without abstaining (thresholds 0: only a number whose said decimals were dropped
    is still abstained on, `inference.drops_said_decimals`) and at every threshold pair of THRESHOLD_GRID. Each example
    is decoded once: abstaining is a function of the decoded confidences (`inference.abstains`).
    A call matches when the car would receive the same call (defaults filled, on/max/min concrete,
    as the dev eval scores); `exact_match_literal` also counts a spelled-out default or "on" for the
    maximum as a miss. `misses` lists the first MAX_LISTED_MISSES misses to read."""
    from agent.config import ModelSettings
    from agent.evaluation import score
    from agent.received import as_received
    from agent.inference import MAX_OUTPUT_TOKENS, CommandModel, Decoded, abstains

    settings = ModelSettings()
    model = CommandModel(model_path, registry)  # thresholds 0: every proposal is decoded whole
    outcomes = []  # (example, decoded, matched without abstaining)
    tokens = decode_ms = 0.0
    undecodable = 0
    for example in examples:
        try:
            decoded = model.decode(example.text)
        except DecodeError:  # no complete answer: the daemon says so and does nothing
            undecodable += 1
            decoded = Decoded(example.text, [], MAX_OUTPUT_TOKENS, 0.0, 0.0)
        expected = as_received(registry, example.calls)
        outcomes.append((example, decoded, score(registry, expected, as_received(registry, decoded.calls))[0]))
        tokens += decoded.output_tokens
        decode_ms += decoded.decode_ms

    def judged(example, decoded, matched, min_function: float, min_argument: float) -> tuple[bool, bool]:
        """(acts, right): abstaining is right only on a negative."""
        acts = bool(decoded.calls) and not abstains(decoded, min_function, min_argument)
        return acts, (matched if acts else not example.calls)

    def tally(min_function: float, min_argument: float) -> dict:
        passed = false = wrong = abstained = 0
        for example, decoded, matched in outcomes:
            acts, right = judged(example, decoded, matched, min_function, min_argument)
            passed += right
            abstained += bool(decoded.proposals) and not acts and bool(example.calls)
            false += acts and not example.calls
            wrong += acts and bool(example.calls) and not matched
        n = max(len(outcomes), 1)
        return {"min_confidence": min_function, "min_argument_confidence": min_argument,
                "exact_match": round(passed / n, 4), "false_actuations": false, "wrong_actuations": wrong,
                "abstained_on_commands": abstained}

    grid = {pair: tally(*pair) for pair in THRESHOLD_GRID}
    chosen = tally(settings.min_confidence, settings.min_argument_confidence)
    raw = grid[0.0, 0.0]
    misses, literal = [], 0
    for example, decoded, matched in outcomes:
        acts, right = judged(example, decoded, matched, settings.min_confidence, settings.min_argument_confidence)
        calls = decoded.calls if acts else []
        literal += calls == list(example.calls)
        if not right and len(misses) < MAX_LISTED_MISSES:
            misses.append({"text": example.text, "template": example.template,
                           "expected": [dataclasses.asdict(c) for c in example.calls],
                           "decoded": [dataclasses.asdict(c) for c in calls],
                           "proposed": [dataclasses.asdict(c) for c in decoded.proposals]})
    n = max(len(outcomes), 1)
    return {
        "examples": len(outcomes),
        "negatives": sum(not e.calls for e, _, _ in outcomes),
        "undecodable": undecodable,
        **chosen,
        "exact_match_literal": round(literal / n, 4),
        "exact_match_without_abstaining": raw["exact_match"],
        "false_actuations_without_abstaining": raw["false_actuations"],
        "wrong_actuations_without_abstaining": raw["wrong_actuations"],
        "output_tokens_per_command": round(tokens / n, 2),
        "decode_tokens_per_second": round(tokens / max(decode_ms / 1000, 1e-9), 1),
        "thresholds": list(grid.values()),
        "misses": misses,
    }
