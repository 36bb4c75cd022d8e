"""Regenerate the data files of the bundled scenes: ``foam.vol`` (micro-CT sample, Mitsuba .vol grid).

Run from the repository root: ``python scenes/data/make_data.py --force``.
"""

import argparse
from pathlib import Path

import numpy as np

from drct.io import refuse_overwrite
from drct.scene.volfile import write_vol


def foam(n: int = 40, seed: int = 7) -> np.ndarray:
    """A block with 40 random spherical pores, as 0/1 voxels (z, y, x)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n) - (n - 1) / 2,) * 3, indexing="ij")
    vol = ((np.abs(x) < 16) & (np.abs(y) < 16) & (np.abs(z) < 18)).astype(np.float32)
    for _ in range(40):
        c, r = rng.uniform(-14, 14, 3), rng.uniform(1.5, 4.0)
        vol[(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < r * r] = 0.0
    return vol


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    target = Path(__file__).parent / "foam.vol"
    refuse_overwrite([target], parser.parse_args().force)
    write_vol(target, foam(), bbox=((-2.0, -2.0, -2.0), (2.0, 2.0, 2.0)))
    print(f"wrote {target}")
