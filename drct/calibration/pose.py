"""The object pose a calibration estimates alongside (the joint problem's gauge, :mod:`drct.calibration.model`)
applied to a volume: the calibration's volume lies in the moved object's frame, the returned reconstruction in
the scanner's."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import affine_transform

from ..geometry.perturb import undo_object_motion
from ..geometry.volume import VolumeGeometry


def in_scanner_frame(x: np.ndarray, vg: VolumeGeometry, motion: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The volume ``x`` of the object moved by ``motion = (t, rotation)`` (``p -> R p + t``) as seen in the
    scanner's frame: ``x_s(q) = x(R^T (q - t))``, cubic spline interpolation, zero outside the grid. Projecting it
    without the motion gives (up to the interpolation) what projecting ``x`` with it gives.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((1, 1, 4))  # four coefficients along x, 1 mm apart
        >>> x = np.array([[[0.0, 1.0, 2.0, 3.0]]])
        >>> moved = in_scanner_frame(x, vg, (np.array([1.0, 0.0, 0.0]), np.zeros(3)))  # the object moved by +1 mm
        >>> np.round(moved, 6).ravel().tolist()
        [0.0, 0.0, 1.0, 2.0]
    """
    ndim = x.ndim
    shift = [float(v) for v in np.asarray(motion[0], dtype=np.float64).reshape(ndim)]
    angles = [float(v) for v in np.asarray(motion[1], dtype=np.float64).reshape(-1)]
    rotation = angles[0] if ndim == 2 else angles
    # R^T, column by column: the inverse motion of the axes' directions (drct.geometry.perturb's convention)
    back = np.array([undo_object_motion(list(e), rotation, None, False) for e in np.eye(ndim)]).T
    h = np.asarray(vg.spacing_xyz, dtype=np.float64)
    middle = (np.asarray(vg.shape_xyz, dtype=np.float64) - 1) / 2
    c = np.asarray(vg.center, dtype=np.float64)
    # index k (x, y, z order) -> point q = c + h (k - middle) -> p = R^T (q - t) -> index k' = (p - c) / h + middle
    matrix = (back * h[None, :]) / h[:, None]
    corner = np.array(undo_object_motion(list(c - h * middle), rotation, shift, True), dtype=np.float64)
    offset = (corner - c) / h + middle
    flip = slice(None, None, -1)  # arrays are indexed (z, y, x)
    start: Any = offset[flip]  # one offset per axis (scipy's stubs say a float)
    return affine_transform(np.asarray(x, dtype=np.float32), matrix[flip, flip], start, order=3, mode="constant")
