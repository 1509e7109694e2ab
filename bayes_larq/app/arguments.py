"""The argument types of the `bayes-larq` command line: they convert; ranges and rules
are the business of each setting's owner (`RunConfig`)."""

from __future__ import annotations

import argparse
import json
import pathlib

__all__ = ["arch_argument", "integer", "non_negative_float", "non_negative_int", "number",
           "output_path", "positive_float", "positive_int", "share"]


def integer(text: str) -> int:
    """An integer; its range is the business of the setting's owner (`RunConfig`)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def number(text: str) -> float:
    """A number; its range is the business of the setting's owner (`RunConfig`)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _integer_at_least(text, minimum):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _integer_at_least(text, 0)


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def share(text: str) -> float:
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {text!r}")
    return value


def output_path(text: str) -> pathlib.Path:
    """A path for something to be written; the empty string is refused (it would mean '.')."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return pathlib.Path(text)


def arch_argument(text: str) -> tuple[str, object]:
    """KEY=VALUE, VALUE parsed as JSON when it can be (numbers, booleans), else a string."""
    key, separator, raw = text.partition("=")
    if not separator or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (for example width=16), got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw
