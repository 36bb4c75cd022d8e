"""The ``drct`` command line: one module per subcommand in this package.

Each module ``drct/cli/<name>.py`` defines ``register(subparsers)``, which adds its parser and sets
``func=run`` (a callable taking the parsed arguments and returning an exit status).

Example:
    $ drct info
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The ``drct`` argument parser with every subcommand of this package registered."""
    parser = argparse.ArgumentParser(prog="drct", description="Differentiable X-ray transforms on Dr.Jit.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
        importlib.import_module(f"{__name__}.{module}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``drct`` with ``argv`` (default ``sys.argv[1:]``); user errors print one line and return 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError) as err:
        print(f"drct {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"drct {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
