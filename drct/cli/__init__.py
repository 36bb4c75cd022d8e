"""The ``drct`` command line: one module per subcommand in this package.

Each module ``drct/cli/<name>.py`` defines ``register(subparsers)``, which adds its parser and sets
``func=run`` (a callable taking the parsed arguments and returning an exit status).

Every anticipated failure — a bad option, an unreadable or malformed input file, a too-large request
(:class:`~drct.errors.MemoryBudgetError`), non-finite data (:class:`~drct.errors.NonFiniteError`), a full disk
or an unwritable output — ends in ONE line on stderr and exit status 2; Ctrl-C in status 130. Anything else is a
bug in drct and keeps its traceback.

Example:
    $ drct info
    $ drct --version
    $ python -m drct simulate shepp_logan_2d -o out/shepp_logan_2d
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..backend import get_backend
from ..concurrency import deterministic
from ..extras import MissingExtraError
from ._flags import thread_count

MAX_ARGUMENT = 100_000  # characters per command-line argument (Linux itself passes at most 131072 bytes)
MAX_MESSAGE = 1_000  # characters of an error message (a value quoted in it may be huge)
USER_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    OSError,
    MemoryError,
    RecursionError,
    OverflowError,
    EOFError,
    MissingExtraError,  # an optional dependency to install: the message names the extra
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with a pointer to ``--help``) and status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def add_determinism_flag(parser: argparse.ArgumentParser) -> None:
    """``--nondeterministic``: let A.T add per-thread sums in any order (faster on many cores; results then differ
    in the last bits between runs). Without it, commands that write results run in deterministic mode."""
    parser.add_argument(
        "--nondeterministic",
        action="store_true",
        help="faster multi-threaded adjoints whose float sums may differ in the last bits between runs",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``drct`` argument parser with every subcommand of this package registered."""
    parser = Parser(prog="drct", description="Differentiable X-ray transforms on Dr.Jit.")
    parser.add_argument("--version", action="version", version=f"drct {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
        importlib.import_module(f"{__name__}.{module}").register(sub)
    return parser


def version() -> str:
    """drct's version: the installed distribution's, else (a source tree never installed) ``0.0.0+local``."""
    from .. import __version__

    return __version__


def one_line(text: str) -> str:
    """``text`` on one line, at most :data:`MAX_MESSAGE` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 25] + f" ... ({len(flat)} characters)"


def describe(err: BaseException) -> str:
    """A user-facing one-line description of an anticipated error."""
    if isinstance(err, RecursionError):
        return "the input is nested too deeply to be read (maximum recursion depth exceeded)"
    if isinstance(err, OSError) and err.strerror:
        where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
        hint = "; free disk space or choose another output" if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return f"{where + ': ' if where else ''}{err.strerror}{hint}"
    if isinstance(err, MemoryError) and not str(err):
        return "out of memory"
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return one_line(text or type(err).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``drct`` with ``argv`` (default ``sys.argv[1:]``); user errors print one line and return 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, item in enumerate(argv):
        if len(item) > MAX_ARGUMENT:
            print(f"drct: error: argument {i + 1} has {len(item)} characters (limit {MAX_ARGUMENT})", file=sys.stderr)
            return 2
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed
        return done.code if isinstance(done.code, int) else 2
    try:
        # results files are bit-reproducible unless the user trades that for speed (see drct.concurrency); a
        # CPU mode: CUDA's atomics have no fixed order, so a GPU run keeps them
        wanted = hasattr(args, "nondeterministic") and not args.nondeterministic
        with deterministic(wanted and get_backend() == "llvm"), thread_count(getattr(args, "threads", None)):
            return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"drct {args.command}: error: {describe(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"drct {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
