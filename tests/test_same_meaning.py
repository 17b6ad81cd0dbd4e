"""Argument confidence counts the alternatives the car would receive alike, on the tiny model."""

from agent.decoding import Call
from agent.inference import SAME_MEANING_BELOW, CommandModel, _Step
from agent.received import received_key

WINDOW_DOWN = Call("set_window_position", {"open_percent": "max", "window": "driver"})


def test_meaning_is_what_the_car_receives(registry):
    spelled_out = received_key(registry, [WINDOW_DOWN])
    assert received_key(registry, [Call("set_window_position", {"open_percent": "max"})]) == spelled_out  # the default
    assert received_key(registry, [Call("set_window_position", {"open_percent": 100})]) == spelled_out  # "max" made concrete
    assert received_key(registry, [Call("set_window_position", {"open_percent": "max", "window": "passenger"})]) != spelled_out
    fan = Call("set_fan_speed", {"level": 2})
    assert received_key(registry, [WINDOW_DOWN, fan]) == received_key(registry, [fan, WINDOW_DOWN])  # a multiset
    assert received_key(registry, [WINDOW_DOWN, fan]) != received_key(registry, [WINDOW_DOWN])


def _steps(ids, unsure):
    """Steps taking ids, sure of each but those in unsure: index -> (confidence, alternatives)."""
    return [_Step(t, *unsure.get(i, (1.0, ()))) for i, t in enumerate(ids)]


def test_an_alternative_meaning_the_same_adds_to_the_choice(registry, tiny_build):
    result, _ = tiny_build
    model = CommandModel(result.model, registry)
    codec = model.codec
    ids = codec.encode([WINDOW_DOWN])
    calls = codec.decode_ids(ids)
    semicolon = ids.index(codec.fragment(";")[0])  # after "max": name the window, or end and leave it to its default
    eos = codec.eos_id
    prompt = [model.tokenizer.bos_id] + codec.prompt("roll down the window")
    merged = model._confidences(prompt, _steps(ids, {semicolon: (0.5, ((eos, 0.45),))}), calls)
    assert merged == (1.0, 0.95)
    # ending before any argument leaves open_percent unsaid: another command, so not counted
    apart = model._confidences(prompt, _steps(ids, {1: (0.6, ((eos, 0.3),)), semicolon: (0.5, ((eos, 0.45),))}),
                               calls)
    assert apart == (1.0, 0.6)


def _answer(model, prompt, prefix=(), branch_below=None):
    """Decode from scratch: the prompt and prefix evaluated anew, then greedily; (steps, decoder)."""
    decoder = model.codec.decoder()
    for token in prefix:
        decoder.advance(token)
    model.llm.reset()
    model.llm.eval(prompt + list(prefix) if not decoder.done else prompt)
    steps = [] if decoder.done else model._greedy(decoder, branch_below)
    return steps, decoder


def test_a_branch_decoded_on_the_cache_equals_one_decoded_from_scratch(registry, tiny_build):
    """Branches reuse llama.cpp's cache, which holds the greedy answer or an earlier branch; decoded from
    scratch by a second copy of the model, each must give the same calls."""
    result, _ = tiny_build
    model, scratch = CommandModel(result.model, registry), CommandModel(result.model, registry)
    branched = 0
    for text in ["open the drivers window halfway", "set the fan to three", "seat heating on two for the passenger",
                 "navigate to the airport", "volume up by four"]:
        prompt = [model.tokenizer.bos_id] + model.codec.prompt(text)
        steps, _ = _answer(model, prompt, branch_below=(SAME_MEANING_BELOW, SAME_MEANING_BELOW))
        for i, step in enumerate(steps):  # in the order _confidences takes them, the cache never reset
            for token, _ in step.alternatives:
                prefix = [s.token for s in steps[:i]] + [token]
                _, fresh = _answer(scratch, prompt, prefix)
                assert model._completion(prompt, prefix) == (fresh.calls() if fresh.done else None), (text, prefix)
                branched += 1
    assert branched > 3, "the tiny model was sure of nearly every choice: too few branches to test"


def test_with_thresholds_set_the_decision_is_the_one_the_full_confidences_give(registry, tiny_build):
    """With thresholds set, only the choices below them look for alternatives: the calls made and the
    abstentions must be those that the confidences computed everywhere (thresholds 0) give."""
    from agent.inference import abstains
    from agent.templates import load_templates
    from agent.toolchain.data import build_dataset
    from tests.conftest import REPO

    result, recipe = tiny_build
    texts = [e.text for e in build_dataset(recipe.data, registry, load_templates(REPO / "models/templates", registry)).train[:60]]
    everywhere = CommandModel(result.model, registry)
    for function, argument in [(0.5, 0.5), (0.9, 0.3), (0.3, 0.9)]:
        held = CommandModel(result.model, registry, min_confidence=function, min_argument_confidence=argument)
        decisions = set()
        for text in texts:
            full, decided = everywhere.decode(text), held.decode(text)
            assert decided.abstained == abstains(full, function, argument), text
            assert decided.calls == ([] if decided.abstained else full.calls), text
            decisions.add(decided.abstained)
        assert decisions == {True, False}, f"at {function}/{argument} the tiny model always or never abstains"
