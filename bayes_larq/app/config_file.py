"""Settings files: `bayes-larq train --config FILE`, the settings of a run in TOML.

A file holds `RunConfig` settings under their names, as config.json does (the flag
`--batch-size` is the key `batch_size`; `--no-bonn` is `kernel_loss = false` and
`feature_loss = false`), and `arch` as a table:

    model = "wrn22"
    dataset = "cifar10"
    optimizer = "sgd"
    learning_rate = 0.01
    lr_schedule = "step"
    [arch]
    width_factor = 4

Flags given on the command line override the file (`merge_settings`; `--arch KEY=VALUE`
overrides that key of the table). A key that is not a setting, or a value of another
type than the setting's (a string for a number, a float for an integer, anything but
`true`/`false` for a switch), is refused with a RunError naming the key; ranges and the
rules between settings are `RunConfig.validate`'s, as for flags. The run's config.json
records the resolved settings and, in `config_file`, the file they came from.

TOML because Python 3.11 reads it with the standard library (`tomllib`, no dependency),
it has comments (a recipe says what the paper states and what it leaves out), and its
types (booleans, integers, floats, strings, tables) are those of the settings; JSON has
no comments and YAML needs a package and reads `no` as false.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import pathlib
import tomllib
from typing import Any, Mapping

from bayes_larq.app.config import RunConfig, has_setting_type, setting_kind
from bayes_larq.app.errors import RunError

__all__ = ["FILE_KEY", "merge_settings", "overlay", "read_settings_file"]

FILE_KEY = "config_file"  # the setting that records the file; never set in one


def _settings():
    return [f.name for f in dataclasses.fields(RunConfig) if f.name != FILE_KEY]


def read_settings_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of the TOML file `path`; RunError naming the file and the key for an
    unreadable file, an unknown key or a value of the wrong type."""
    path = pathlib.Path(path)
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"Cannot read the settings file {path} ({type(err).__name__}: "
                       f"{err}).") from None
    except tomllib.TOMLDecodeError as err:
        raise RunError(f"The settings file {path} is not valid TOML: {err}.") from None
    known = _settings()
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key.replace("-", "_"), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known keys: {', '.join(known)}."
            raise RunError(f"{path}: unknown setting {key!r}.{hint}")
        if not has_setting_type(key, value):
            raise RunError(f"{path}: the setting {key!r} must be {_kind_text(key)}; got "
                           f"{value!r} ({type(value).__name__}).")
    return values


def _kind_text(name):
    return {"bool": "a boolean (true or false)", "int": "an integer", "float": "a number",
            "str": "a string", "dict": "a table"}.get(setting_kind(name), setting_kind(name))


def merge_settings(file_settings: Mapping[str, Any], flags: Mapping[str, Any],
                   path: str | os.PathLike) -> dict[str, Any]:
    """The settings of a run: those of the file at `path`, overridden by `flags` (`arch`
    key by key), with `config_file` recording the file."""
    return {**overlay(file_settings, flags), FILE_KEY: str(pathlib.Path(path).resolve())}


def overlay(base: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """`base` settings overridden by `flags`, the `arch` table key by key."""
    merged = {**base, **flags}
    if "arch" in base and "arch" in flags:
        merged["arch"] = {**base["arch"], **flags["arch"]}
    return merged
