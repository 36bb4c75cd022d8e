"""One style of flags across the ``drct`` subcommands (``drct/cli/_flags.py``): every parser is walked."""

from __future__ import annotations

import argparse
import re

import drjit as dr
import pytest

from drct.cli import build_parser, main
from drct.cli._flags import COMMON, DEPRECATED

# spellings of the shared flags that no subcommand may show (a new subcommand with --out fails here)
SYNONYMS = {
    "output": ("--out", "--outdir", "--out-dir", "--output-dir", "--output-folder", "--dest"),
    "iterations": ("-n", "--n", "--niter", "--n-iter", "--iters", "--iter", "--num-iterations", "--n-iterations"),
    "no_progress": ("-q", "--quiet", "--silent", "--no-progress-bar", "--noprogress", "--progress"),
    "seed": ("--random-seed", "--rng-seed", "--rng", "-s"),
    "threads": ("-j", "--jobs", "--nthreads", "--num-threads", "--n-threads", "--thread-count"),
}
WRITES = ("simulate", "reconstruct", "calibrate", "generate")  # the subcommands that write results
COMPUTES = WRITES  # the subcommands that run Dr.Jit kernels (and so take --threads)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _visible(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Option string -> action, as ``--help`` shows them."""
    return {s: a for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def _style_problems(name: str, parser: argparse.ArgumentParser) -> list[str]:
    """What ``drct name`` spells differently from :data:`drct.cli._flags.COMMON` (empty: nothing)."""
    banned = {s: dest for dest, spellings in SYNONYMS.items() for s in spellings}
    problems = []
    for flag, action in _visible(parser).items():
        if flag in banned:
            problems.append(f"drct {name} shows {flag}; spell it {'/'.join(COMMON[banned[flag]])}")
        elif action.dest in COMMON and tuple(action.option_strings) != COMMON[action.dest]:
            problems.append(f"drct {name} spells {action.dest} {action.option_strings}, not {COMMON[action.dest]}")
    return problems


def test_every_subcommand_spells_the_common_flags_the_same() -> None:
    subcommands = _subcommands()
    assert set(WRITES) <= set(subcommands) and "info" in subcommands
    for name, parser in subcommands.items():
        assert _style_problems(name, parser) == []
        shown = _visible(parser)
        if name in WRITES:
            for dest in ("output", "no_progress"):
                assert shown[COMMON[dest][-1]].dest == dest, f"drct {name} has no {COMMON[dest][-1]}"
            assert shown["-o"].required, f"drct {name}: the output must be required"
        if name in COMPUTES:
            assert shown["--threads"].dest == "threads"
        if name == "reconstruct":
            assert shown["--iterations"].dest == "iterations"
        if name in ("simulate", "calibrate", "generate"):  # the commands that draw random numbers
            assert shown["--seed"].type is int


def test_the_walk_catches_a_subcommand_with_another_spelling() -> None:
    """The check above fails for a parser that spells a common flag another way."""
    for flags, dest in (
        (("-o", "--out"), "output"),
        (("--outdir",), "output"),
        (("-O", "--output"), "output"),
        (("--quiet",), "no_progress"),
        (("-n", "--iterations"), "iterations"),
        (("--nthreads",), "threads"),
    ):
        bad = argparse.ArgumentParser(prog="drct new")
        bad.add_argument(*flags, dest=dest)
        assert _style_problems("new", bad), flags
    good = argparse.ArgumentParser(prog="drct new")
    good.add_argument("-o", "--output")
    assert _style_problems("new", good) == []


@pytest.mark.parametrize("old", sorted(DEPRECATED))
def test_old_spellings_work_hidden_with_a_note(old: str, capsys: pytest.CaptureFixture[str]) -> None:
    new = DEPRECATED[old]
    found = 0
    for name, parser in _subcommands().items():
        if old not in parser._option_string_actions:
            continue
        found += 1
        action = parser._option_string_actions[old]
        assert action is parser._option_string_actions[new]  # the same flag: same dest, type and required-ness
        assert not re.search(re.escape(old) + r"(?![\w-])", parser.format_help())  # hidden from --help
        value = [] if action.nargs == 0 else ["7"]
        capsys.readouterr()
        action(parser, argparse.Namespace(), action.const if not value else value[0], old)
        err = capsys.readouterr().err
        assert (
            err == f"drct {name}: DeprecationWarning: {old} is deprecated and will be removed in the next release; "
            f"use {new}\n"
        )
        action(parser, argparse.Namespace(), action.const if not value else value[0], new)
        assert capsys.readouterr().err == ""
    assert found, f"no subcommand still accepts {old}"


def test_old_and_new_spellings_parse_alike(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    pairs = [  # the command, its old spelling, its new one
        (["calibrate", "s.toml"], ["--out", "o"], ["-o", "o"]),
        (["reconstruct", "y.npy", "-o", "r.tif"], ["--niter", "3"], ["--iterations", "3"]),
        (["simulate", "s", "-o", "o"], ["--quiet"], ["--no-progress"]),
        (["generate", "s", "--samples", "2", "-o", "o"], ["--quiet"], ["--no-progress"]),
    ]
    for command, old, new in pairs:
        assert vars(parser.parse_args(command + old)) == vars(parser.parse_args(command + new))
    err = capsys.readouterr().err
    assert err.count("DeprecationWarning") == 4 and err.count("\n") == 4
    assert main(["calibrate", "s.toml"]) == 2  # the output stays required
    assert "required: -o/--output" in capsys.readouterr().err


def test_threads_sets_drjit_threads_for_the_command_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import drct.cli.simulate as simulate

    seen: list[int] = []
    before = dr.thread_count()
    monkeypatch.setattr(simulate, "run", lambda args: seen.append(dr.thread_count()) or 0)
    assert main(["simulate", "x", "-o", "o", "--threads", "1"]) == 0
    assert main(["simulate", "x", "-o", "o"]) == 0
    assert seen == [1, before] and dr.thread_count() == before
    assert main(["simulate", "x", "-o", "o", "--threads", "0"]) == 2  # refused by the parser


def test_info_names_the_vector_extension_that_sizes_the_cpu_kernels(tmp_path) -> None:
    # benchmark tables from an AVX-512 and an AVX2 machine differ by up to 3× for the same code: the device line
    # (which every benchmark prints) says which one ran
    from drct.cli.info import _simd

    flags = {"avx512f avx2 avx fma": "AVX-512", "fma avx avx2 bmi2": "AVX2", "sse4_2 avx": "AVX", "sse4_2": ""}
    for text, expected in flags.items():
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu {text} pni\n")
        assert _simd(str(path)) == expected, text
    assert _simd(str(tmp_path / "missing")) == ""
