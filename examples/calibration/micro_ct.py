"""Micro-CT with a misaligned detector (shift, roll, pitch) and a centre-of-rotation offset, from the scene
``scenes/micro_ct_misaligned.toml`` (foam sample, polychromatic tube, flat-panel noise), calibrated jointly with
the volume. Prints estimates against the scene's true misalignment and the runtime.

Run:  python examples/calibration/micro_ct.py [--scale 0.5] [-o out/micro] [--force]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import parser, scene_case

ROOT = Path(__file__).resolve().parents[2]

if __name__ == "__main__":
    p = parser(__doc__, 0, 0)
    p.add_argument("--scale", type=float, default=0.5, help="fraction of the scene's size (views, pixels, voxels)")
    args = p.parse_args()
    scene_case(ROOT / "scenes" / "micro_ct_misaligned.toml", None, None, args)
