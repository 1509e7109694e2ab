"""The errors of the job, each with a structured hint at what the user can do next.

A message is a sequence of text and hints. A hint names a step of the job (`Step`) or a
setting (`Setting`) rather than spelling out how to take it, because that depends on
where the user is: `str(error)` renders it for the Python API (`runs.resume('RUN')`,
`kernel_loss=False`), `bayes_larq.app.cli` renders the same error with command lines and
flags (`bayes-larq train --resume RUN`, `--no-kernel-loss`).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import pathlib
import re
from typing import Any, Callable, Collection, Iterator, Mapping, Union

__all__ = [
    "DatasetError", "DatasetNotFoundError", "Hint", "Hinted", "JobFailed", "RunError",
    "RunInterrupted", "Setting", "Step",
    "TrainingDiverged", "python_text", "setting_error", "settings_checked",
]

_NAMED_SETTING = re.compile(r"`(\w+)(?:=([^`]+))?`")
STEPS = ("train", "resume", "resume_previous", "convert")
_UNSET = object()


@dataclasses.dataclass(frozen=True)
class Step:
    """A step of the job on a path: "train" (a new run there), "resume", "resume_previous"
    (resume from the checkpoint before the last) or "convert"."""

    name: str
    path: pathlib.Path

    def __post_init__(self):
        if self.name not in STEPS:
            raise ValueError(f"Unknown step {self.name!r}; known: {STEPS}.")


@dataclasses.dataclass(frozen=True)
class Setting:
    """A setting (a `RunConfig` field or a keyword argument), with the value to give it."""

    name: str
    value: Any = _UNSET

    @property
    def has_value(self) -> bool:
        return self.value is not _UNSET


Hint = Union[Step, Setting]
Part = Union[str, Step, Setting]

_PYTHON_STEPS = {"train": "runs.train(config, {path!r})", "resume": "runs.resume({path!r})",
                 "resume_previous": "runs.resume({path!r}, previous_checkpoint=True)",
                 "convert": "runs.convert({path!r})"}


def python_text(hint: Hint) -> str:
    """How a Python user takes the step or gives the setting."""
    if isinstance(hint, Step):
        return _PYTHON_STEPS[hint.name].format(path=str(hint.path))
    return f"{hint.name}={hint.value!r}" if hint.has_value else f"`{hint.name}`"


class Hinted:
    """An exception whose message is made of text and hints (see the module docstring)."""

    parts: tuple[Part, ...]

    def render(self, text_of: Callable[[Hint], str]) -> str:
        return "".join(part if isinstance(part, str) else text_of(part) for part in self.parts)


class RunError(Hinted, ValueError):
    """A run directory or configuration that cannot be used; the message says why."""

    def __init__(self, *parts: Part):
        self.parts = parts
        super().__init__(self.render(python_text))


class JobFailed(Hinted, Exception):
    """A step that ran but failed (a converted model that disagrees, a missing file)."""

    def __init__(self, *parts: Part):
        self.parts = parts
        super().__init__(self.render(python_text))


class DatasetError(ValueError):
    """A dataset file exists but is corrupt, truncated or not what it should be."""


class DatasetNotFoundError(Hinted, FileNotFoundError):
    """A dataset is not available anywhere it was looked for."""

    def __init__(self, *parts: Part):
        self.parts = parts
        super().__init__(self.render(python_text))


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the run keeps its last good checkpoint."""


class RunInterrupted(Hinted, KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); the run resumes from its last finished epoch."""

    def __init__(self, run_dir, epochs_done: int, epochs: int, signal_name: str = "SIGINT"):
        self.run_dir, self.epochs_done, self.epochs = run_dir, epochs_done, epochs
        self.signal_name = signal_name
        self.parts = (f"Interrupted ({signal_name}): {epochs_done} of {epochs} epochs are "
                      f"saved in {run_dir}. Resume with: ", Step("resume", pathlib.Path(run_dir)))
        super().__init__(self.render(python_text))


def setting_error(err: ValueError, settings: Collection[str],
                  renamed: Mapping[str, str] | None = None) -> RunError:
    """RunError of a failed check of a setting's owner (`BayesianSign`, a model builder,
    `data.load`, ...), every `name` or `name=value` in backticks that is one of
    `settings` turned into a Setting hint, so the command line shows its flag.

    `renamed` maps an owner's argument name to the setting that feeds it (for example
    BayesianSign's `scale` to RunConfig's `kernel_scale`)."""
    if isinstance(err, RunError):
        return err
    renamed = dict(renamed or {})
    parts: list[Part] = []
    position = 0
    message = str(err)
    for named in _NAMED_SETTING.finditer(message):
        name = renamed.get(named.group(1), named.group(1))
        if name not in settings:
            continue
        parts += [message[position:named.start()], _setting(name, named.group(2))]
        position = named.end()
    return RunError(*parts, message[position:])


def _setting(name: str, value: str | None) -> Setting:
    if value is None:
        return Setting(name)
    try:
        return Setting(name, ast.literal_eval(value))
    except (ValueError, SyntaxError):
        return Setting(name, value)


@contextlib.contextmanager
def settings_checked(*settings: str, renamed: Mapping[str, str] | None = None
                     ) -> Iterator[None]:
    """Inside, a ValueError of a setting's owner (a `bayes_larq.defaults` check, a
    library object) is raised as a RunError naming `settings` (`setting_error`)."""
    try:
        yield
    except ValueError as err:
        raise setting_error(err, settings, renamed) from None
