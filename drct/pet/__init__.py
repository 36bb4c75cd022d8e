"""PET: cylindrical multi-ring scanners, sinograms (span, mashing) and listmode, time of flight, attenuation,
normalisation, the exact forward model and its transpose, and the Poisson log-likelihood.

Example:
    >>> import numpy as np, drct as ct
    >>> sc = ct.pet.scanner(rings=4, crystals_per_ring=32, radius=60.0, crystal_size=4.0)
    >>> vg = ct.VolumeGeometry((4, 16, 16), voxel_size=4.0)
    >>> A = ct.pet.PETProjector(vg, ct.pet.sinogram(sc), mu=np.full(vg.shape, 0.0096, np.float32))
    >>> x = np.ones(vg.shape, np.float32)
    >>> rec = ct.recon.osem(A, A(x), niter=2, subsets=4, progress=False)
    >>> rec.shape
    (4, 16, 16)
"""

from .likelihood import log_likelihood as log_likelihood
from .likelihood import log_likelihood_gradient as log_likelihood_gradient
from .projector import ListmodePETProjector as ListmodePETProjector
from .projector import PETProjector as PETProjector
from .projector import attenuation_factors as attenuation_factors
from .scanner import Scanner as Scanner
from .scanner import scanner as scanner
from .sinogram import ListmodeGeometry as ListmodeGeometry
from .sinogram import SinogramGeometry as SinogramGeometry
from .sinogram import listmode as listmode
from .sinogram import sinogram as sinogram
from .tof import TOF as TOF

__all__ = [
    "TOF",
    "ListmodeGeometry",
    "ListmodePETProjector",
    "PETProjector",
    "Scanner",
    "SinogramGeometry",
    "attenuation_factors",
    "listmode",
    "log_likelihood",
    "log_likelihood_gradient",
    "scanner",
    "sinogram",
]
