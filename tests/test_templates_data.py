"""Templates parse and cover every function; the data stage is deterministic and split by template."""

import dataclasses
from collections import Counter

import pytest

from agent.decoding import Call
from agent.errors import ConfigError
from agent.templates import load_templates, number_words, parse, speak_number
from agent.textnorm import normalize
from agent.toolchain.data import IMPERATIVE_VERBS, NEGATORS, DataConfig, Example, build_dataset, contrast
from tests.conftest import REPO

TEMPLATES = REPO / "models" / "templates"


@pytest.fixture(scope="module")
def templates(registry):
    return load_templates(TEMPLATES, registry)


@pytest.fixture(scope="module")
def dataset(registry, templates):
    return build_dataset(DataConfig(samples_per_template=6), registry, templates)


def test_every_function_has_a_dozen_templates(registry, templates):
    counts = Counter(t.function for t in templates.templates if t.function)
    assert set(counts) == {f.name for f in registry}
    assert min(counts.values()) >= 12
    assert len(templates.negatives) >= 100


def test_syntax_errors_are_reported():
    for bad in ("(a|b", "a]", "{x", "{x:abs}"):
        with pytest.raises(ValueError):
            parse(bad)


def test_a_template_missing_a_required_argument_is_refused(registry, tmp_path):
    (tmp_path / "t.yaml").write_text("functions:\n  set_fan_speed:\n    templates: ['fan please']\n")
    with pytest.raises(ConfigError, match="does not always give level"):
        load_templates(tmp_path, registry)


def test_numbers_as_words():
    assert number_words(21) == "twenty one"
    assert number_words(108) == "one hundred eight"
    import random
    assert speak_number(23.5, random.Random(0), words=True) == "twenty three point five"
    assert speak_number(-2.0, random.Random(0), words=False) == "2"


def test_normalize_makes_typed_text_look_spoken():
    assert normalize("Set the temp to 21.5°C, please!") == "set the temp to 21.5 degrees please"
    assert normalize("I'm cold -- volume -2") == "im cold volume -2"
    assert normalize("Brightness 50%") == "brightness 50 percent"


def test_dataset_is_deterministic(registry, templates):
    a = build_dataset(DataConfig(samples_per_template=2), registry, templates)
    b = build_dataset(DataConfig(samples_per_template=2), registry, templates)
    assert a == b


def test_split_is_by_template(dataset):
    def keys(examples):
        return {k for e in examples for k in e.template.split("+")}
    assert not keys(dataset.train) & keys(dataset.heldout)
    assert not {e.text for e in dataset.train} & {e.text for e in dataset.heldout}


def test_adding_a_template_moves_no_other(registry, templates):
    """The split and each template's sentences depend on the template alone, so a data change is
    measured on the same held-out phrasings as before."""
    config = DataConfig(samples_per_template=3)
    before = build_dataset(config, registry, templates)
    fan = templates.for_function("set_fan_speed")
    extra = dataclasses.replace(fan[-1], index=fan[-1].index + 1, text="blower to {level} right away",
                                tree=parse("blower to {level} right away"))
    after = build_dataset(config, registry, dataclasses.replace(templates, templates=templates.templates + (extra,)))

    def sentences(dataset, part):
        out = {}
        for e in getattr(dataset, part):
            if e.kind != "multi":
                out.setdefault(e.template, []).append(e.text)
        return out

    for part in ("train", "heldout"):
        old, new = sentences(before, part), sentences(after, part)
        assert set(old) <= set(new)
        assert all(sorted(new[k]) == sorted(v) for k, v in old.items() if not k.startswith("negative/"))
    assert extra.key in sentences(after, "train") or extra.key in sentences(after, "heldout")


def test_negated_commands_are_training_negatives_and_change_nothing_else(registry, templates):
    """negated_rate adds "dont <training command>" as negatives: only to training, and without moving
    any other example (the held-out set stays comparable)."""
    plain = build_dataset(DataConfig(samples_per_template=3), registry, templates)
    negated = build_dataset(DataConfig(samples_per_template=3, negated_rate=0.2), registry, templates)
    assert negated.heldout == plain.heldout
    added = [e for e in negated.train if e.template.startswith("negated/")]
    assert sorted(map(repr, (e for e in negated.train if e not in added))) == sorted(map(repr, plain.train))
    commands = [e for e in plain.train if e.kind in ("single", "relative") and e.text.split()[0] in IMPERATIVE_VERBS]
    assert len(added) == int(0.2 * len(commands)) > 50
    said = {(f"negated/{e.template}", n + e.text) for e in commands for n in NEGATORS}
    assert all((e.template, e.text) in said and e.calls == () and e.kind == "negative" for e in added)
    assert not {e.text.split()[0] for e in added} - {n.split()[0] for n in NEGATORS}


@pytest.mark.parametrize("text, function, args, said, flipped", [
    ("roll down the window", "set_window_position", {"open_percent": "max"}, "roll up the window", {"open_percent": "min"}),
    ("close the sunroof", "set_sunroof_position", {"open_percent": "min"}, "open the sunroof", {"open_percent": "max"}),
    ("turn the volume down by 3", "adjust_volume", {"delta": -3}, "turn the volume up by 3", {"delta": 3}),
    ("its too hot in here", "adjust_cabin_temperature", {"delta_celsius": "down"}, "its too cold in here",
     {"delta_celsius": "up"}),
    ("turn on the ac", "set_air_conditioning", {"on": True}, "turn off the ac", {"on": False}),
    ("unlock the car", "set_door_lock", {"locked": False}, "lock the car", {"locked": True}),
    ("switch off the seat heater for the passenger", "set_seat_heating_intensity", {"seat": "passenger", "level": 0},
     "switch on the seat heater for the passenger", {"seat": "passenger", "level": "on"}),
    # Left alone: nothing flips, the word does not decide, or the sentence names the value.
    ("my seat is too hot", "set_seat_ventilation", {"level": "on"}, None, None),
    ("turn the volume up to max", "set_volume", {"level": "max"}, None, None),
    ("turn the temperature down to 20", "set_cabin_temperature", {"celsius": 20.0}, None, None),
    ("set the seat heater on zero", "set_seat_heating_intensity", {"level": 0}, None, None),
    ("the kids keep trying to open the back doors", "set_child_lock", {"on": True}, None, None),
    ("turn the music up not down", "adjust_volume", {"delta": "up"}, None, None),
])
def test_contrast_swaps_the_deciding_word_and_flips_its_argument(registry, text, function, args, said, flipped):
    made = contrast(registry, Example(text, (Call(function, args),), "t#1", "single"))
    if said is None:
        assert made is None
    else:
        assert (made.text, made.calls, made.template) == (said, (Call(function, flipped),), "contrast/t#1")


def test_contrast_pairs_are_training_commands_only(registry, templates):
    """contrast_rate adds contrast pairs of training commands to training; the held-out set only loses
    a sentence that a pair now says (the model would have seen it)."""
    plain = build_dataset(DataConfig(samples_per_template=3), registry, templates)
    paired = build_dataset(DataConfig(samples_per_template=3, contrast_rate=0.5), registry, templates)
    added = [e for e in paired.train if e.template.startswith("contrast/")]
    assert sorted(map(repr, (e for e in paired.train if e not in added))) == sorted(map(repr, plain.train))
    assert len(added) > 100
    kept = set(map(repr, paired.heldout))
    assert kept <= set(map(repr, plain.heldout))
    assert {e.text for e in plain.heldout if repr(e) not in kept} <= {e.text for e in added}
    assert {e.text for e in added}.isdisjoint(e.text for e in plain.train)


def test_mix_of_kinds(dataset):
    for part in (dataset.train, dataset.heldout):
        kinds = Counter(e.kind for e in part)
        positives = len(part) - kinds["negative"]
        assert kinds["negative"] * 3 >= positives  # at least one negative for three positives
        assert kinds["multi"] and kinds["relative"] and kinds["out_of_range"]


def test_out_of_range_values_are_transcribed_not_clamped(registry, dataset):
    outside = [e for e in dataset.train if e.kind == "out_of_range"]
    for example in outside[:50]:
        call = example.calls[0]
        spec = registry.get(call.function)
        assert any(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            and (v < spec.arg(k).min or v > spec.arg(k).max)
            for k, v in call.args.items()
        ), example


# Everyday phrasings the default recipe must train on, with the right direction: the split once held out
# every template saying four of them ("warmer", "too quiet", "skip forward", "unlock the child").
EVERYDAY = [
    ("warmer", "adjust_cabin_temperature", "delta_celsius", "up"),
    ("cooler", "adjust_cabin_temperature", "delta_celsius", "down"),
    ("louder", "adjust_volume", "delta", "up"),
    ("quieter", "adjust_volume", "delta", "down"),
    ("too quiet", "adjust_volume", "delta", "up"),
    ("roll down", "set_window_position", "open_percent", "max"),
    ("roll up", "set_window_position", "open_percent", "min"),
    ("skip forward", "media_control", "action", "next"),
    ("unlock the child", "set_child_lock", "on", False),
]


@pytest.fixture(scope="module")
def default_training(registry, templates):
    from agent.toolchain.recipe import load_recipe

    recipe = load_recipe(REPO / "models" / "recipes" / "default.yaml")
    return build_dataset(recipe.data, registry, templates).train


@pytest.mark.parametrize("phrase,function,arg,value", EVERYDAY, ids=[e[0] for e in EVERYDAY])
def test_the_default_recipe_trains_on_everyday_phrasings(default_training, phrase, function, arg, value):
    said = [e for e in default_training if len(e.calls) == 1 and f" {phrase} " in f" {e.text} "]
    assert any(e.calls[0].function == function and e.calls[0].args.get(arg) == value for e in said), said[:5]
