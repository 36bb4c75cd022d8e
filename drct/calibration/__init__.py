"""Geometry calibration: joint reconstruction and estimation of misalignment parameters.

Example:
    >>> import numpy as np, drct as ct
    >>> vg = ct.VolumeGeometry((24, 24, 24))
    >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 40, endpoint=False), (24, 24), 2.0, 60.0, 120.0)
    >>> y = ct.Projector(vg, pg.perturb(det_shift_u=0.8), basis="bspline2")(ct.phantoms.shepp_logan(vg))
    >>> res = ct.calibrate(y, pg, ["det_shift_u"], vg=vg, levels=[1], iterations=4, progress=False)
    >>> round(res.params["det_shift_u"], 1)
    0.8
"""

from .model import EndpointModel as EndpointModel
from .model import PerturbModel as PerturbModel
from .options import CalibrationOptions as CalibrationOptions
from .problem import ridge_cgls as ridge_cgls
from .result import CalibrationResult as CalibrationResult
from .solver import State as State
from .solver import calibrate as calibrate

__all__ = [
    "CalibrationOptions",
    "CalibrationResult",
    "EndpointModel",
    "PerturbModel",
    "State",
    "calibrate",
    "ridge_cgls",
]
