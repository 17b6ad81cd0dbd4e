"""What the agent says back to the driver: short, plain sentences built from the calls."""

from __future__ import annotations

from typing import Any


def describe_call(function: str, args: dict[str, Any]) -> str:
    words = function.replace("_", " ")
    if not args:
        return words
    values = ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in args.items())
    return f"{words} ({values})"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("_", " ")


def done(calls) -> str:
    return "Done: " + "; ".join(describe_call(f, a) for f, a in calls) + "."


def confirm_question(calls) -> str:
    return "Please confirm: " + "; ".join(describe_call(f, a) for f, a in calls) + "? Say yes or no."


NOT_A_COMMAND = "Sorry, that is not something I can do in this car."
UNSURE = "Sorry, I am not sure what you want me to do, so I changed nothing. Could you say it another way?"
NOT_HEARD = "I didn't catch that."
CANCELLED = "Cancelled; nothing was changed."
NOTHING_PENDING = "There is nothing waiting for confirmation."
