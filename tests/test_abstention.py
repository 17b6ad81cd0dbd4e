"""The abstention rule the daemon and the toolchain's evaluation share."""

import pytest

from agent.decoding import Call
from agent.inference import Decoded, abstains

FOLD = [Call("set_mirrors_folded", {"folded": True})]


def decoded(calls, function_confidence=1.0, argument_confidence=1.0):
    return Decoded("fold the mirrors", calls, 4, 1.0, 1.0, function_confidence=function_confidence,
                   argument_confidence=argument_confidence)


@pytest.mark.parametrize("function, argument, expected", [
    (0.95, 0.95, False),  # sure of both
    (0.60, 0.95, True),   # unsure which function
    (0.95, 0.40, True),   # unsure how: fold or unfold
    (0.70, 0.50, False),  # exactly at the thresholds acts
])
def test_abstains_below_either_threshold(function, argument, expected):
    assert abstains(decoded(FOLD, function, argument), 0.7, 0.5) is expected


def test_thresholds_of_zero_never_abstain():
    assert not abstains(decoded(FOLD, 0.01, 0.01), 0.0, 0.0)


def test_doing_nothing_is_never_an_abstention():
    assert not abstains(decoded([], 0.2, 0.2), 0.7, 0.5)


def test_judged_on_what_was_proposed():
    withheld = Decoded("fold the mirrors", [], 4, 1.0, 1.0, abstained=True, proposed=FOLD,
                       function_confidence=0.9, argument_confidence=0.3)
    assert abstains(withheld, 0.7, 0.5)
    assert not abstains(withheld, 0.7, 0.2)


TUNE = "tune to 104.4"


@pytest.mark.parametrize("text, value, expected", [
    (TUNE, 104.0, True),                 # the said decimals dropped
    (TUNE, 104.4, False),                # as said
    ("tune to 104", 104.0, False),       # said whole
    ("tune to 104.0", 104.0, False),     # a zero decimal is the whole number
    ("tune to 98.4", 104.0, False),      # another number entirely is not this rule's business
])
def test_abstains_when_said_decimals_are_dropped(text, value, expected):
    sure = Decoded(text, [Call("tune_radio", {"frequency_mhz": value})], 6, 1.0, 1.0)
    assert abstains(sure, 0.0, 0.0) is expected
