"""Ctrl-C during a calibration: recognise it wherever it lands, and hold it off while results are put together.

A KeyboardInterrupt that lands while Dr.Jit traces a symbolic loop (the ray march of every projection and
Jacobian pass) reaches Python as ``RuntimeError("dr.while_loop(): encountered an exception ...")`` with the
KeyboardInterrupt as its cause: :func:`is_interrupt` sees through that. :func:`deferred_interrupts` postpones
Ctrl-C (in the main thread) until a block that assembles or writes the results is done.

Example:
    >>> from drct.calibration.interrupts import is_interrupt
    >>> try:
    ...     try:
    ...         raise KeyboardInterrupt
    ...     except KeyboardInterrupt as cause:
    ...         raise RuntimeError("dr.while_loop(): encountered an exception (see above).") from cause
    ... except RuntimeError as err:
    ...     print(is_interrupt(err), is_interrupt(ValueError("bad value")))
    True False
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


def is_interrupt(err: BaseException) -> bool:
    """True for a KeyboardInterrupt, or an exception raised because of one (its cause or context chain)."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


@dataclass
class Deferred:
    """Whether a Ctrl-C arrived (and was held off) inside :func:`deferred_interrupts`."""

    pending: bool = False


@contextmanager
def deferred_interrupts() -> Iterator[Deferred]:
    """Hold off SIGINT inside the block and report it in ``.pending`` instead of raising (main thread only;
    elsewhere signals are not delivered to the thread anyway)."""
    state = Deferred()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def hold(signum: int, frame: Any) -> None:
        state.pending = True

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
