"""Out-of-core data: arrays on disk read and written in blocks; FDK/FBP streamed through them in bounded memory
(projections a chunk of views at a time, the volume a z-slab at a time); SIRT and CGLS streaming the projections
(the volume in memory); all resumable after an interruption (:mod:`drct.outofcore.store`,
:mod:`drct.outofcore.fdk`, :mod:`drct.outofcore.solvers`, :mod:`drct.outofcore.work`).

Example:
    >>> import numpy as np, drct as ct
    >>> from drct.outofcore import plan
    >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 720, endpoint=False), (512, 512), 0.4, 500.0, 800.0)
    >>> plan(ct.VolumeGeometry((512, 512, 512)), pg, "1GiB")
    Plan(views=6, slab=98)
"""

from .fdk import Plan, fbp, fdk, parse_memory, plan
from .solvers import cgls, plan_views, sirt
from .store import ChunkedArray, create_array, kind_of, open_array, write_tiff_stack

__all__ = [
    "ChunkedArray",
    "Plan",
    "cgls",
    "create_array",
    "fbp",
    "fdk",
    "kind_of",
    "open_array",
    "parse_memory",
    "plan",
    "plan_views",
    "sirt",
    "write_tiff_stack",
]
