"""Stage: the speech language model that constrains recognition to the agent's domain.

Sentences are sampled from every phrase template (commands and negatives
alike, so chit-chat is still heard as chit-chat), written the way a
recognizer writes them: lower case, no punctuation, numbers in words. An
n-gram model with back-off (pocketsphinx's own ARPA builder) is estimated
from them; pocketsphinx decodes with it, and its unigrams are vosk's
vocabulary.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from agent.atomic import write_text
from agent.manifest import write_manifest
from agent.registry import Registry
from agent.templates import TemplateSet, speak_number
from agent.toolchain.data import DataConfig, build_dataset


@dataclass(frozen=True)
class SpeechConfig:
    enabled: bool = True
    samples_per_template: int = 8
    discount_mass: float = 0.5  # probability mass kept back for unseen n-grams
    seed: int = 4321


def speech_corpus(config: SpeechConfig, data: DataConfig, registry: Registry, templates: TemplateSet) -> list[str]:
    """Unique recognizer-style sentences from every template (no held-out split: this is not the eval)."""
    spoken = dataclasses.replace(data, seed=config.seed, samples_per_template=config.samples_per_template,
                                 words_rate=1.0, heldout_fraction=0.0)
    dataset = build_dataset(spoken, registry, templates)
    return sorted({_numbers_in_words(e.text) for e in dataset.train + dataset.heldout if e.text})


def _numbers_in_words(text: str) -> str:
    """Digits left in slot phrases ("221 baker street") spoken as a recognizer writes them."""
    rng = random.Random(0)
    return re.sub(r"\d+(\.\d+)?", lambda m: speak_number(float(m.group()), rng, True), text)


def arpa_text(corpus: list[str], config: SpeechConfig) -> str:
    from pocketsphinx.lm import ArpaBoLM

    lm = ArpaBoLM(text="\n".join(corpus), add_start=True, discount_mass=config.discount_mass)
    lm.compute()
    out = StringIO()
    lm.write(out)
    return out.getvalue()


def write_speech_lm(corpus: list[str], config: SpeechConfig, path: Path) -> Path:
    write_text(path, arpa_text(corpus, config))
    write_manifest(path)
    return path
