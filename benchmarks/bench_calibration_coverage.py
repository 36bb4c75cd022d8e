"""Do the calibration's reported uncertainties cover the truth? ``--problems`` random small calibration problems
(:mod:`drct.calibration.coverage`: a misalignment drawn uniformly from its ranges, the noise from its own seed),
each calibrated from the nominal geometry; prints, per parameter, the fraction whose error is within the reported
2σ (target ≥ 90%), how many of the rest the run warned about, and the median and RMS of |error| / σ, with the
machine's load. ``--compare`` runs every problem twice, also without the weighting check
(``model_check=False``), and prints both tables.

Run:  python benchmarks/bench_calibration_coverage.py [--problems 20] [--kind fan|cone] [--size 24]
          [--data model|analytic] [--compare]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import load

from drct.calibration.coverage import random_problem, solve, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", type=int, default=20)
    p.add_argument("--kind", default="fan", choices=("fan", "cone"))
    p.add_argument("--size", type=int, default=24)
    p.add_argument("--data", default="model", choices=("model", "analytic"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", action="store_true", help="also without the weighting check (model_check=False)")
    args = p.parse_args()
    print(load())
    variants: dict[str, dict] = {"defaults": {}}
    if args.compare:
        variants["model_check=False"] = {"model_check": False}
    rows: dict[str, list] = {v: [] for v in variants}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for k in range(args.problems):
        problem = random_problem(args.kind, args.size, np.random.default_rng([args.seed, k]), args.data)
        for name, options in variants.items():
            start = time.perf_counter()
            rows[name].append(solve(problem, **options))
            seconds[name].append(time.perf_counter() - start)
        print(f"problem {k + 1}/{args.problems} done", flush=True)
    for name in variants:
        print(
            f"\n{args.problems} {args.kind} problems, {args.size} per axis, {args.data} data, {name} "
            f"(median {np.median(seconds[name]):.1f} s per problem):"
        )
        print("\n".join(table(rows[name])))
    print(load())


if __name__ == "__main__":
    main()
