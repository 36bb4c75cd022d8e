"""The flags several ``drct`` subcommands share, spelled one way: ``-o/--output``, ``--iterations``,
``--no-progress``, ``--seed`` and ``--threads``.

Each subcommand adds them through these functions, so a flag has one spelling, one help text and one behaviour
everywhere (``tests/test_cli_flags.py`` walks every subcommand's parser and fails on another spelling). Earlier
spellings (:data:`DEPRECATED`: ``--out``, ``--niter``, ``--quiet``) keep working for one release: they are hidden
from ``--help`` and print a one-line ``DeprecationWarning`` note to stderr naming the new flag.

Example:
    >>> import argparse
    >>> from drct.cli._flags import add_output, add_progress
    >>> parser = argparse.ArgumentParser(prog="drct demo")
    >>> add_output(parser, "output folder", old=("--out",))
    >>> add_progress(parser, old=("--quiet",))
    >>> args = parser.parse_args(["--out", "folder", "--no-progress"])  # a note on stderr for --out
    >>> args.output, args.no_progress
    ('folder', True)
    >>> text = parser.format_help()  # --help shows the one spelling
    >>> "-o OUTPUT, --output OUTPUT" in text, "--out " in text
    (True, False)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

#: The one spelling of each shared flag (dest -> option strings, as ``--help`` shows them).
COMMON: dict[str, tuple[str, ...]] = {
    "output": ("-o", "--output"),
    "iterations": ("--iterations",),
    "no_progress": ("--no-progress",),
    "seed": ("--seed",),
    "threads": ("--threads",),
}

#: Earlier spellings still accepted for one release (hidden, with a note on stderr) -> the flag to use.
DEPRECATED: dict[str, str] = {"--out": "--output", "--niter": "--iterations", "--quiet": "--no-progress"}


def _deprecating(action: argparse.Action, old: Sequence[str]) -> None:
    """Let ``action`` also answer to the spellings ``old`` (already registered with its parser), hidden from
    ``--help``, with a note on stderr whenever one is used."""
    action.option_strings = [s for s in action.option_strings if s not in old]  # --help shows the new ones only
    hidden, new = frozenset(old), action.option_strings[-1]
    for flag in old:
        if DEPRECATED.get(flag) != new:
            raise ValueError(f"{flag} is not a deprecated spelling of {new} (see DEPRECATED)")
    base = type(action)

    def __call__(
        self: argparse.Action,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if option_string in hidden:
            print(
                f"{parser.prog}: DeprecationWarning: {option_string} is deprecated and will be removed in the next "
                f"release; use {new}",
                file=sys.stderr,
            )
        base.__call__(self, parser, namespace, values, option_string)

    action.__class__ = type(f"Deprecating{base.__name__}", (base,), {"__call__": __call__})


def add_output(parser: argparse.ArgumentParser, help: str, old: Sequence[str] = (), **kwargs: Any) -> None:
    """``-o/--output`` (required unless ``required=False`` is given), stored as ``args.output``."""
    kwargs.setdefault("required", True)
    _deprecating(parser.add_argument(*COMMON["output"], *old, help=help, **kwargs), old)


def add_iterations(parser: argparse.ArgumentParser, help: str, old: Sequence[str] = (), **kwargs: Any) -> None:
    """``--iterations``, stored as ``args.iterations``."""
    _deprecating(parser.add_argument(*COMMON["iterations"], *old, help=help, **kwargs), old)


def add_progress(parser: argparse.ArgumentParser, old: Sequence[str] = ()) -> None:
    """``--no-progress``: no progress bars and no status notes on stderr (``args.no_progress``)."""
    action = parser.add_argument(
        *COMMON["no_progress"], *old, action="store_true", help="no progress bars and no status notes on stderr"
    )
    _deprecating(action, old)


def add_seed(parser: argparse.ArgumentParser, help: str = "random seed (default 0)", default: int = 0) -> None:
    """``--seed N``, stored as ``args.seed``."""
    parser.add_argument(*COMMON["seed"], type=int, default=default, help=help)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: CPU threads of Dr.Jit's LLVM backend for this command (``args.threads``; default: Dr.Jit's,
    one per core). :func:`drct.cli.main` applies it around the command and restores the previous count."""
    parser.add_argument(
        *COMMON["threads"],
        type=_positive_int,
        default=None,
        metavar="N",
        help="CPU threads of the LLVM backend (default: one per core)",
    )


@contextmanager
def thread_count(threads: int | None) -> Iterator[None]:
    """Within the block, Dr.Jit's CPU thread pool has ``threads`` workers (None: leave it as it is)."""
    if threads is None:
        yield
        return
    import drjit as dr

    before = dr.thread_count()
    dr.set_thread_count(threads)
    try:
        yield
    finally:
        dr.sync_thread()
        dr.set_thread_count(before)
