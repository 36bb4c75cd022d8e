"""``drct generate`` throughput: samples per second of a bundled scene, in this process and on a local Ray cluster
with 1 and 2 workers; the median of ``--repeat`` (at least 5) runs after a first run timed apart (Ray workers
start and import drct on their first task), with the machine's load (``uptime``) before and after. Every run's
``dataset.h5`` is compared with the serial run's: the table says whether all were byte-identical.

Run:  python benchmarks/bench_generate.py [--scene scenes/shepp_logan_2d.toml] [--scale 1] [--samples 64]
      [--workers 1 2] [--repeat 5] [--address HOST:PORT]

Needs ``pip install 'drct[ray]'``. Ray's start-up (a few seconds) is outside the timings: one cluster with
``max(--workers)`` CPUs serves every row, and ``workers=K`` runs at most K samples at a time. With
``--address`` the rows run on that running cluster instead (``ray start --head`` on one machine, ``ray start
--address ...`` on the others; every node needs drct and the scene at the same path), e.g. ``--workers 1 2 4 8``
for the scaling across nodes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import ray

from drct.datasets import Recipe, generate

VARY = ["object.*.mu=uniform(0.015,0.025)", "geometry.det_shift_u=normal(0,0.5)", "source.photons=choice(5e4,1e5)"]


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="scenes/shepp_logan_2d.toml")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--address", default=None, help="a running Ray cluster (default: a local one)")
    args = parser.parse_args()
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")
    recipe = Recipe.from_file(args.scene, VARY, seed=0, scale=args.scale)
    print(f"load before: {load()}")
    ray.init(
        address=args.address,
        num_cpus=None if args.address else max(args.workers),
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    print(f"cluster: {ray.cluster_resources().get('CPU', 0):g} CPUs on {len(ray.nodes())} node(s)")
    root = Path(tempfile.mkdtemp(prefix="bench_generate-"))
    reference: bytes | None = None
    identical = True
    rows = []
    for workers in [0, *args.workers]:
        times = []
        for i in range(args.repeat + 1):
            start = time.perf_counter()
            out = generate(recipe, args.samples, root / f"w{workers}", workers=workers, force=True)
            times.append(time.perf_counter() - start)
            data = (out / "dataset.h5").read_bytes()
            reference = data if reference is None else reference
            identical &= data == reference
            print(f"  workers={workers} run {i}: {times[-1]:.2f} s", flush=True)
        median = statistics.median(times[1:])
        rows.append((workers, times[0], median, args.samples / median))
    ray.shutdown()
    print(f"load after:  {load()}")
    print(f"\n{args.samples} samples of {recipe.load().name} (scale {args.scale}); median of {args.repeat} runs\n")
    print(f"{'workers':>12} {'first run s':>12} {'median s':>10} {'samples/s':>10} {'vs 1 worker':>12}")
    one = next((rate for w, _, _, rate in rows if w == 1), None)
    for workers, first, median, rate in rows:
        name = "0 (no Ray)" if workers == 0 else str(workers)
        scaling = f"{rate / one:.2f}x" if one and workers else ""
        print(f"{name:>12} {first:12.2f} {median:10.2f} {rate:10.1f} {scaling:>12}")
    print(f"\nall datasets byte-identical to the serial one: {'yes' if identical else 'NO'}")


if __name__ == "__main__":
    main()
