"""Stage: vocabulary pruning. Keep the tokens a command model needs; drop the rest of the 262k.

llama.cpp's SPM tokenizer starts from characters and merges adjacent pairs,
highest score first, as long as the merged text is a token. A piece is only
reachable if every intermediate piece on its merge path is in the vocabulary,
so the kept set is closed under those paths: every piece formed while
tokenizing the corpus is kept. Removing a piece that was never formed cannot
change any merge that was made, so the corpus tokenizes exactly as before
(the build checks this on every sentence). Byte-fallback tokens are kept, so
any text still tokenizes.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass

SPACE = "\u2581"  # SPM's visible space
TYPE_NORMAL, TYPE_USER_DEFINED, TYPE_BYTE = 1, 4, 6


@dataclass(frozen=True)
class VocabConfig:
    enabled: bool = False
    general_words: int = 8000      # most frequent whole-word pieces kept for open text (names, places)
    keep_control: tuple[str, ...] = ("<start_of_turn>", "<end_of_turn>")


def merge_pieces(text: str, scores: dict[str, float]) -> set[str]:
    """Every piece llama.cpp's SPM merge forms while tokenizing `text` (spaces as SPACE)."""
    symbols = list(text)
    formed = {s for s in symbols if s in scores}
    if len(symbols) < 2:
        return formed
    prev = list(range(-1, len(symbols) - 1))
    nxt = list(range(1, len(symbols) + 1))
    nxt[-1] = -1
    alive = [True] * len(symbols)
    heap: list[tuple[float, int, int, str]] = []

    def push(left: int, right: int) -> None:
        if left < 0 or right < 0:
            return
        merged = symbols[left] + symbols[right]
        score = scores.get(merged)
        if score is not None:
            heapq.heappush(heap, (-score, left, right, merged))

    for i in range(len(symbols) - 1):
        push(i, i + 1)
    while heap:
        _, left, right, merged = heapq.heappop(heap)
        if not (alive[left] and alive[right]) or nxt[left] != right or symbols[left] + symbols[right] != merged:
            continue  # stale: one side merged with something else first
        symbols[left] = merged
        alive[right] = False
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        formed.add(merged)
        push(prev[left], left)
        push(left, nxt[left])
    return formed


def spm_text(text: str) -> str:
    return text.replace(" ", SPACE)


def kept_token_ids(tokens: list[str], scores: list[float], types: list[int], corpus: list[str],
                   functional_ids: list[int], config: VocabConfig) -> list[int]:
    """Sorted ids of the tokens to keep (base ids; order preserved, so scores stay monotonic)."""
    index = {t: i for i, t in enumerate(tokens) if types[i] in (TYPE_NORMAL, TYPE_USER_DEFINED)}
    score_of = {t: scores[i] for t, i in index.items()}
    keep = set(range(6))  # pad, eos, bos, unk, mask, [multimodal]: fixed ids the metadata names
    keep |= set(functional_ids)
    keep |= {i for i, t in enumerate(types) if t in (TYPE_BYTE, TYPE_USER_DEFINED)}
    keep |= {i for i, t in enumerate(tokens) if t in config.keep_control}
    words = [t for t in tokens[: len(tokens)] if t.startswith(SPACE) and re.fullmatch(SPACE + "[a-z]+", t)]
    texts = [spm_text(s) for s in corpus] + words[: config.general_words]
    for text in texts:
        keep |= {index[p] for p in merge_pieces(text, score_of) if p in index}
    return sorted(keep)
