"""Emission tomography: the SPECT operator (parallel-hole collimator, attenuation, depth-dependent response),
the triple-energy-window scatter estimate, and geometry derivatives for torch (:func:`project`).

Example:
    >>> import numpy as np, drct as ct
    >>> vg = ct.VolumeGeometry((8, 16, 16), voxel_size=4.0)
    >>> g = ct.spect(np.linspace(0, 2 * np.pi, 12, endpoint=False), 100.0, (8, 16), 4.0)
    >>> A = ct.emission.SPECTProjector(vg, g, collimator=ct.emission.Collimator.lehr())
    >>> A(np.ones(vg.shape, np.float32)).shape
    (12, 8, 16)
"""

from .autograd import project as project
from .collimator import Collimator as Collimator
from .geometry import SpectGeometry as SpectGeometry
from .geometry import spect as spect
from .projector import SPECTProjector as SPECTProjector
from .scatter import tew_scatter as tew_scatter

__all__ = ["Collimator", "SPECTProjector", "SpectGeometry", "project", "spect", "tew_scatter"]
