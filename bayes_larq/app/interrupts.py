"""Ctrl-C and SIGTERM during training: raised where training can save and stop.

Python ignores an exception raised while a destructor runs (it prints "Exception ignored
in ..." and goes on), so a signal that lands in one would be lost and training would run
to the end. `raise_interrupt` therefore keeps the interrupt pending, and training raises
it again at its next batch or epoch (`PendingInterruptCheck`, `raise_pending_interrupt`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import tensorflow as tf

__all__ = ["PendingInterruptCheck", "interrupts_kept_pending", "raise_interrupt",
           "raise_pending_interrupt"]

# Interrupts raised by `raise_interrupt` that training has not handled yet.
_pending_interrupts: list[KeyboardInterrupt] = []


def raise_interrupt(interrupt: KeyboardInterrupt) -> None:
    """Raise `interrupt` from a signal handler and keep it pending until training handles it."""
    _pending_interrupts.append(interrupt)
    raise interrupt


def raise_pending_interrupt(*_) -> None:
    """Raise the last interrupt that a destructor swallowed, if any."""
    if _pending_interrupts:
        raise _pending_interrupts[-1]


class PendingInterruptCheck(tf.keras.callbacks.Callback):
    """Raises an interrupt that a destructor swallowed (see `raise_interrupt`)."""

    on_train_batch_end = on_test_batch_end = on_epoch_end = raise_pending_interrupt


def _raise_sigint(signum, frame):
    raise_interrupt(KeyboardInterrupt())


@contextlib.contextmanager
def interrupts_kept_pending() -> Iterator[None]:
    """Ctrl-C goes through `raise_interrupt` while training runs (when Python's own
    handler is in place, in the main thread); nothing stays pending afterwards."""
    replace = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if replace:
        signal.signal(signal.SIGINT, _raise_sigint)
    try:
        yield
    finally:
        if replace:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _pending_interrupts.clear()
