"""The Poisson log-likelihood of PET data and its gradient, for any drct emission operator.

For ``y ~ Poisson(ȳ)`` with ``ȳ = A x + s`` (``s``: randoms + scatter, known), up to a constant

    ``L(x) = Σ_i y_i log ȳ_i - ȳ_i``,   ``∇L(x) = Aᵀ (y / ȳ) - Aᵀ 1``.

For a listmode operator (``y``: one weight per event, usually 1) the sum runs over the events and ``Σ_i ȳ_i``
over every LOR is ``sᵀx`` with ``s`` the operator's sensitivity image (plus the total expected background,
a constant left out).

Example:
    >>> import numpy as np, drct as ct
    >>> sc = ct.pet.scanner(rings=2, crystals_per_ring=16, radius=40.0)
    >>> A = ct.pet.PETProjector(ct.VolumeGeometry((2, 8, 8), voxel_size=4.0), ct.pet.sinogram(sc), dtype="float64")
    >>> x = np.ones(A.domain_shape)
    >>> y = np.random.default_rng(0).poisson(A(x)).astype(np.float64)
    >>> bool(ct.pet.log_likelihood(A, x, y) > ct.pet.log_likelihood(A, 3 * x, y))
    True
    >>> ct.pet.log_likelihood_gradient(A, x, y).shape
    (2, 8, 8)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import nonnegative


def _arrays(A: Any, x: Any, y: Any, additive: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x``, ``y`` and ``ȳ = A x + s`` as float64 numpy arrays (checked)."""
    xa = np.asarray(x, dtype=np.float64)
    ya = nonnegative(y, A.range_shape, "y (PET data)", "Poisson counts")
    mean = np.asarray(A(xa.astype(A.types.np_dtype)), dtype=np.float64)
    if additive is not None:
        mean = mean + nonnegative(additive, ya.shape, "additive (randoms + scatter)", "expected counts")
    dead = (ya > 0) & (mean <= 0)
    if dead.any():
        raise ValueError(
            f"the model A x + s is {mean[dead].min():g} <= 0 in {int(dead.sum())} bins where counts were measured "
            f"(first at {tuple(int(i) for i in np.argwhere(dead)[0])}): the log-likelihood is -inf there; "
            "start from a positive x or add a positive background"
        )
    return xa, ya, mean


def _sensitivity(A: Any) -> np.ndarray:
    """``Σ_i A_iᵀ``: the listmode operator's sensitivity image, or ``A.T 1``."""
    own = getattr(A, "sensitivity_tensor", None)
    if own is not None:
        return np.asarray(own().numpy(), dtype=np.float64)
    return np.asarray(A.T(np.ones(A.range_shape, A.types.np_dtype)), dtype=np.float64)


def log_likelihood(A: Any, x: Any, y: Any, additive: Any = None) -> float:
    """``L(x) = Σ y log(A x + s) - (A x + s)`` (constant terms dropped; listmode: see the module docstring).

    Example:
        >>> import numpy as np, drct as ct
        >>> sc = ct.pet.scanner(rings=2, crystals_per_ring=16, radius=40.0)
        >>> A = ct.pet.PETProjector(ct.VolumeGeometry((2, 8, 8), voxel_size=4.0), ct.pet.sinogram(sc), dtype="float64")
        >>> x = np.ones(A.domain_shape)
        >>> y = A(x)  # noiseless data: x is the maximum
        >>> bool(ct.pet.log_likelihood(A, x, y) > max(ct.pet.log_likelihood(A, s * x, y) for s in (0.9, 1.1)))
        True
    """
    xa, ya, mean = _arrays(A, x, y, additive)
    seen = ya > 0
    value = float(np.sum(ya[seen] * np.log(mean[seen])))
    if getattr(A, "sensitivity_tensor", None) is not None:
        return value - float(np.sum(_sensitivity(A) * xa))
    return value - float(np.sum(mean))


def log_likelihood_gradient(A: Any, x: Any, y: Any, additive: Any = None) -> np.ndarray:
    """``∇L(x) = Aᵀ (y / (A x + s)) - Aᵀ 1`` (listmode: the sensitivity image instead of ``Aᵀ 1``).

    Example:
        >>> import numpy as np, drct as ct
        >>> sc = ct.pet.scanner(rings=2, crystals_per_ring=16, radius=40.0)
        >>> A = ct.pet.PETProjector(ct.VolumeGeometry((2, 8, 8), voxel_size=4.0), ct.pet.sinogram(sc), dtype="float64")
        >>> x = np.ones(A.domain_shape)
        >>> g = ct.pet.log_likelihood_gradient(A, x, A(x))  # zero at the maximum
        >>> g.shape, bool(np.abs(g).max() < 1e-6 * np.abs(A.T(np.ones(A.range_shape))).max())
        ((2, 8, 8), True)
    """
    _, ya, mean = _arrays(A, x, y, additive)
    ratio = np.where(ya > 0, ya / np.where(mean > 0, mean, 1.0), 0.0)
    back = np.asarray(A.T(ratio.astype(A.types.np_dtype)), dtype=np.float64)
    return back - _sensitivity(A)
