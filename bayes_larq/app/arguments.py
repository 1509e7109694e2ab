"""The argument types of the `bayes-larq` command line: they convert, and nothing else.

A range or a rule is checked once, by the owner of the setting (`RunConfig`, or the
library object it feeds; `evaluate`, `convert` and `benchmark` for their options),
whose error names the setting, which the command line shows as its flag (exit 2)."""

from __future__ import annotations

import argparse
import json
import pathlib

__all__ = ["arch_argument", "integer", "number", "output_path"]


def integer(text: str) -> int:
    """An integer; its range is the business of the setting's owner."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def number(text: str) -> float:
    """A number; its range is the business of the setting's owner."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


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
