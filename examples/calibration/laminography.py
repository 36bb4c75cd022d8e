"""Laminography (rotation axis tilted 30° towards the source) of a flat plate, ``scenes/laminography.toml``,
with a shifted and rolled detector and a small extra axis tilt, calibrated jointly with the volume.

Run:  python examples/calibration/laminography.py [--scale 0.5] [-o out/lamino] [--force]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import parser, scene_case

ROOT = Path(__file__).resolve().parents[2]
TRUTH = {"det_shift_u": 1.5, "det_shift_v": -1.0, "det_roll": np.deg2rad(0.8), "axis_tilt": np.deg2rad(0.5)}

if __name__ == "__main__":
    p = parser(__doc__, 0, 0)
    p.add_argument("--scale", type=float, default=0.5, help="fraction of the scene's size (views, pixels, voxels)")
    args = p.parse_args()
    scene_case(ROOT / "scenes" / "laminography.toml", TRUTH, list(TRUTH), args)
