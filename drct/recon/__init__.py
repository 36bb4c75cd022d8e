"""Reconstruction: FBP/FDK in physical units and iterative solvers with one signature.

Example:
    >>> import numpy as np, drct as ct
    >>> vg = ct.VolumeGeometry((24, 24))
    >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 36, endpoint=False), 36), basis="voxel")
    >>> y = A(ct.phantoms.shepp_logan(vg))
    >>> [solve(A, y, niter=3, progress=False).shape for solve in (ct.recon.sirt, ct.recon.mlem, ct.recon.fista_tv)]
    [(24, 24), (24, 24), (24, 24)]
    >>> ct.recon.FILTERS  # the window names fbp, fdk and filter_response take
    ('ram-lak', 'shepp-logan', 'cosine', 'hamming', 'hann')
"""

from .. import backend as _backend  # noqa: F401  (first: it picks a libLLVM before Dr.Jit loads)
from .em import mlem as mlem
from .em import osem as osem
from .fbp import fbp as fbp
from .fbp import fbp_tensor as fbp_tensor
from .fbp import fdk as fdk
from .filters import FILTERS as FILTERS
from .filters import filter_response as filter_response
from .filters import filter_rows as filter_rows
from .filters import filter_tensor as filter_tensor
from .filters import padded_length as padded_length
from .penalised import RelativeDifferencePrior as RelativeDifferencePrior
from .penalised import bsrem as bsrem
from .solvers import cgls as cgls
from .solvers import os_sart as os_sart
from .solvers import sirt as sirt
from .tv import fista_tv as fista_tv
from .weights import FBPWeights as FBPWeights
from .weights import fbp_weights as fbp_weights
from .weights import parker_weights as parker_weights

__all__ = [
    "FILTERS",
    "FBPWeights",
    "RelativeDifferencePrior",
    "bsrem",
    "cgls",
    "fbp",
    "fbp_tensor",
    "fbp_weights",
    "fdk",
    "filter_response",
    "filter_rows",
    "filter_tensor",
    "fista_tv",
    "mlem",
    "os_sart",
    "osem",
    "padded_length",
    "parker_weights",
    "sirt",
]
