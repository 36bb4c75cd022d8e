"""The measurement chain: line integrals → photons → noisy b-bit readings → line integrals again.

Deterministic steps (:func:`transmitted`, :func:`blur`, :func:`expected_counts`, :func:`expected_readings`,
:func:`log_transform`) take numpy arrays (numpy out) or Dr.Jit tensors (Dr.Jit out, differentiable with Dr.Jit's
AD in both modes). The polychromatic sum is one ``dr.CustomOp`` so that its gradient keeps no per-energy graph:
memory O(rays × materials), whatever the number of energy bins. Random steps (:func:`sample_counts`,
:func:`simulate_counts`, noisy :func:`flat_field`/:func:`dark_field`) use numpy's PCG64 generator seeded by
``seed`` and are reproducible; they are not differentiable.

``paths`` is either one array of dimensionless line integrals ∫μ (energy independent), or a mapping from a
material (a name such as ``"water"`` or a :class:`~drct.physics.Material`) to path lengths in mm, where the key
``None`` holds energy-independent line integrals. All arrays share one shape, e.g. ``pg.shape``.

Example:
    >>> import numpy as np
    >>> from drct.physics import Detector, Spectrum, expected_readings, log_transform
    >>> det = Detector(i0=1000.0, gain=2.0, bits=None)
    >>> r = expected_readings(np.array([[0.0, 1.0]]), None, det)
    >>> np.round(r, 3).tolist(), np.round(log_transform(r, flat=500.0), 6).tolist()
    ([[500.0, 183.94]], [[-0.0, 1.0]])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import drjit as dr
import numpy as np

from ..backend import types, upload
from ..errors import require_finite
from .detector import Detector
from .materials import Material, get_material
from .spectrum import Spectrum


def _is_drjit(x: Any) -> bool:
    return dr.is_tensor_v(x) or dr.is_array_v(x)


def _items(paths: Any) -> list[tuple[Material | None, Any]]:
    if not isinstance(paths, Mapping):
        return [(None, paths)]
    if not paths:
        raise ValueError("paths is empty: give at least one array of path lengths or line integrals")
    return [(None if key is None else get_material(key), value) for key, value in paths.items()]


def line_integrals(paths: Any, energy: float) -> Any:
    """The clean line integrals ``Σ μ(energy) L`` at one energy: each material's μ at ``energy`` (keV) times its
    path lengths, plus the energy-independent line integrals (key None). numpy or Dr.Jit arrays (AD kept).

    Example:
        >>> import numpy as np
        >>> from drct.physics.forward import get_material, line_integrals
        >>> y = line_integrals({"water": np.array([10.0]), None: np.array([0.5])}, 60.0)
        >>> bool(np.isclose(y[0], 10.0 * get_material("water").mu(60.0)[0] + 0.5))
        True
    """
    total: Any = None
    for material, value in _items(paths):
        term = value if material is None else float(material.mu(energy)[0]) * value
        total = term if total is None else total + term
    return total


def _as_arrays(values: list[Any]) -> tuple[list[Any], Any]:
    """All values as numpy float64 arrays, or all as Dr.Jit tensors of the first Dr.Jit value's type."""
    tensor = next((type(v) for v in values if _is_drjit(v)), None)
    if tensor is not None and not dr.is_tensor_v(tensor):
        raise TypeError(f"Dr.Jit inputs must be tensors (e.g. TensorXf), got the flat array {tensor.__name__}")
    out = []
    for v in values:
        if tensor is None:
            a = np.asarray(v, dtype=np.float64)
        elif _is_drjit(v):
            a = v if type(v) is tensor else tensor(v)
        else:
            a = tensor(np.asarray(v, dtype=np.float64))
        out.append(a)
    shapes = {tuple(a.shape) for a in out}
    if len(shapes) > 1:
        raise ValueError(f"all path arrays must have the same shape, got {sorted(shapes)}")
    return out, tensor


class _Polychromatic(dr.CustomOp):
    """I = Σ_E w_E exp(−Σ_m μ_mE L_m) on flat Dr.Jit arrays, with hand-written derivatives."""

    def eval(self, lengths: list[Any], mu: np.ndarray, weights: np.ndarray) -> Any:  # type: ignore[override]
        self.lengths, self.mu, self.weights = lengths, mu, weights
        return self._sums(with_derivative=False)[0]

    def _sums(self, with_derivative: bool) -> tuple[Any, list[Any]]:
        cls = type(self.lengths[0])
        total = dr.zeros(cls, dr.width(self.lengths[0]))
        deriv = [dr.zeros(cls, dr.width(self.lengths[0])) for _ in self.lengths]
        for e, w in enumerate(self.weights):
            exponent = dr.zeros(cls, dr.width(self.lengths[0]))
            for m, length in enumerate(self.lengths):
                exponent = dr.fma(dr.opaque(cls, -self.mu[m, e]), length, exponent)
            term = dr.opaque(cls, w) * dr.exp(exponent)
            total += term
            if with_derivative:
                for m in range(len(self.lengths)):
                    deriv[m] = dr.fma(dr.opaque(cls, -self.mu[m, e]), term, deriv[m])
        return total, deriv

    def forward(self) -> None:
        _, deriv = self._sums(with_derivative=True)
        tangents: list[Any] = list(self.grad_in("lengths"))  # type: ignore[arg-type]
        self.set_grad_out(sum((d * t for d, t in zip(deriv, tangents, strict=True)), start=0.0))

    def backward(self) -> None:
        _, deriv = self._sums(with_derivative=True)
        g = self.grad_out()
        self.set_grad_in("lengths", [d * g for d in deriv])

    def name(self) -> str:
        return "drct.physics.polychromatic"


def transmitted(paths: Any, spectrum: Spectrum | None = None, i0: float = 1.0, energy_power: int = 0) -> Any:
    """Mean photons per pixel, ``i0 · Σ_E s(E) (E/Ē)^n exp(−Σ_m μ_m(E) L_m − p)``.

    Args:
        paths: Line integrals, or ``{material: path lengths in mm, None: line integrals}`` (see module docs).
        spectrum: The source spectrum; required when ``paths`` has material keys (None: monochromatic
            line integrals only).
        i0: Photons per pixel with nothing in the beam.
        energy_power: n, weighting each photon by its energy relative to the spectrum's mean energy Ē: 0
            counts photons, 1 gives the signal of an energy-integrating detector, 2 its variance.

    Returns:
        An array of the paths' shape (numpy, or a Dr.Jit tensor when any input is one).

    Example:
        >>> import numpy as np
        >>> from drct import physics
        >>> physics.transmitted(np.array([0.0, np.log(2)]), i0=1000.0)  # line integrals: i0 exp(-p)
        array([1000.,  500.])
        >>> mono = physics.Spectrum.monochromatic(60.0)
        >>> physics.transmitted({"water": np.array([0.0, 10.0])}, mono, i0=1000.0).round(1)  # 10 mm of water
        array([1000. ,  813.9])
    """
    items = _items(paths)
    arrays, tensor = _as_arrays([v for _, v in items])
    materials = [(m, a) for (m, _), a in zip(items, arrays, strict=True) if m is not None]
    offsets = [a for (m, _), a in zip(items, arrays, strict=True) if m is None]
    if materials and spectrum is None:
        names = ", ".join(m.name for m, _ in materials)
        raise ValueError(f"paths through materials ({names}) need a spectrum (e.g. Spectrum.monochromatic(60.0))")
    if not (np.isfinite(i0) and i0 > 0):
        raise ValueError(f"i0 must be a positive number of photons, got {i0!r}")
    if energy_power not in (0, 1, 2):
        raise ValueError(f"energy_power must be 0, 1 or 2, got {energy_power!r}")
    exp = np.exp if tensor is None else dr.exp
    w = None
    if spectrum is not None:
        w = spectrum.weights * (spectrum.energies / spectrum.mean_energy) ** energy_power
    result: Any = i0 if w is None or materials else i0 * float(w.sum())
    for p in offsets:
        result = result * exp(-p)
    if materials:
        assert spectrum is not None
        assert w is not None
        mu = np.stack([m.mu(spectrum.energies) for m, _ in materials])
        shape = tuple(arrays[0].shape)
        if tensor is None:  # numpy: the same fused kernel on Dr.Jit's active backend, no AD
            f64 = types("float64").Float64
            flat = _Polychromatic().eval([upload(f64, a.reshape(-1)) for _, a in materials], mu, w)
            total = flat.numpy().reshape(shape)
        else:
            flat = dr.custom(_Polychromatic, [a.array for _, a in materials], mu, w)
            total = tensor(flat, shape)
        result = result * total
    elif tensor is None:
        result = np.broadcast_to(np.asarray(result, dtype=np.float64), arrays[0].shape).copy()
    return result


def _det_ndim(shape: tuple[int, ...], det_ndim: int | None) -> int:
    if det_ndim is None:
        det_ndim = 2 if len(shape) >= 3 else 1
    if det_ndim not in (1, 2) or det_ndim > len(shape):
        raise ValueError(f"det_ndim must be 1 or 2 and at most the array's rank, got {det_ndim!r} for shape {shape}")
    return det_ndim


TAIL_CHUNK = 1 << 20  # offsets per block when summing a folded kernel's tail (bounded memory at any σ)


def _gauss_taps(sigma: float, n: int) -> np.ndarray:
    """The weights of a normalised Gaussian truncated at 4σ (offsets ``-K..K``), for an axis of ``n`` pixels with
    replicated edges: every tap at ``|offset| >= n - 1`` reads the edge pixel from anywhere on the axis, so their
    weights are folded into the taps at ``±(n - 1)`` (the same result, at most ``2n - 1`` taps: a σ of a million
    pixels used to unroll 8 million gathers). The tail beyond the axis is summed in blocks of :data:`TAIL_CHUNK`
    offsets, so memory stays bounded at any σ (8σ samples used to be made at once: 64 GB for σ = 1e9).

    Example:
        >>> from drct.physics.forward import _gauss_taps
        >>> w = _gauss_taps(1e6, 4)  # 7 taps; the outer two carry everything beyond the axis
        >>> len(w), round(float(w.sum()), 12), bool(w[0] > 0.49)
        (7, 1.0, True)
    """
    radius = max(1, int(np.ceil(4 * sigma)))
    edge = max(n - 1, 0)

    def samples(lo: int, hi: int) -> np.ndarray:  # the unnormalised kernel at offsets lo..hi-1
        return np.exp(-0.5 * (np.arange(lo, hi, dtype=np.float64) / sigma) ** 2)

    if radius <= edge:
        kernel = samples(-radius, radius + 1)
        return kernel / kernel.sum()
    weights = samples(-edge, edge + 1)
    tail = sum(
        float(samples(lo, min(lo + TAIL_CHUNK, radius + 1)).sum()) for lo in range(edge + 1, radius + 1, TAIL_CHUNK)
    )
    weights[0] += tail  # the kernel is symmetric: the same tail on both sides
    weights[-1] += tail
    return weights / weights.sum()


def blur(y: Any, sigma: float, det_ndim: int | None = None) -> Any:
    """Gaussian blur of standard deviation ``sigma`` pixels along the detector axes (edges replicated).

    One kernel (a sampled Gaussian truncated at 4σ, normalised) applied by the field's convolutions:
    :func:`scipy.ndimage.correlate1d` for numpy arrays, :func:`drjit.convolve` for Dr.Jit tensors
    (differentiable), both with ``"nearest"`` edges.

    Args:
        y: Array of shape ``(..., [rows,] cols)`` (numpy or a differentiable Dr.Jit tensor).
        sigma: Standard deviation in pixels (0: no blur).
        det_ndim: Number of trailing detector axes: default 2 for arrays of rank >= 3 (``(views, rows, cols)``),
            else 1 (``(views, cols)``).

    Example:
        >>> import numpy as np
        >>> from drct.physics import blur
        >>> y = np.zeros((1, 11)); y[0, 5] = 1.0  # one bright pixel, 4σ from both edges
        >>> out = blur(y, 1.0)
        >>> round(float(out.sum()), 6), bool(out[0, 4] == out[0, 6] < out[0, 5])
        (1.0, True)
    """
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)):
        raise TypeError(f"blur sigma must be a number of pixels, got {sigma!r}")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"blur sigma must be >= 0 pixels, got {sigma!r}")
    if sigma == 0:
        return y
    shape = tuple(int(n) for n in y.shape)
    nd = _det_ndim(shape, det_ndim)
    if _is_drjit(y):
        for axis in range(len(shape) - 1, len(shape) - 1 - nd, -1):
            y = dr.convolve(y, _gauss_taps(float(sigma), shape[axis]).tolist(), axis=axis, boundary="nearest")
        return y
    from scipy.ndimage import correlate1d

    out = np.asarray(y, dtype=np.float64)
    for axis in range(len(shape) - 1, len(shape) - 1 - nd, -1):  # the kernel is symmetric: correlation = convolution
        out = correlate1d(out, _gauss_taps(float(sigma), shape[axis]), axis=axis, mode="nearest")
    return out


def _power(detector: Detector) -> int:
    return 1 if detector.response == "integrating" else 0


def expected_counts(paths: Any, spectrum: Spectrum | None, detector: Detector, det_ndim: int | None = None) -> Any:
    """Mean signal per pixel after detector blur, in photons (an energy-integrating detector: photon
    equivalents at the spectrum's mean energy): the mean of the noise in :func:`sample_counts`.

    Example:
        >>> import numpy as np
        >>> from drct import physics
        >>> det = physics.Detector(i0=1e4)
        >>> physics.expected_counts({None: np.array([0.0, np.log(4)])}, None, det)  # line integrals 0 and log 4
        array([10000.,  2500.])
    """
    return blur(transmitted(paths, spectrum, detector.i0, _power(detector)), float(detector.blur), det_ndim)


def noise_factor(paths: Any, spectrum: Spectrum | None, detector: Detector, det_ndim: int | None = None) -> Any:
    """Variance / mean of the signal of an energy-integrating detector (``Σ s E² e^{-μL} / Σ s E e^{-μL}``
    relative to Ē; 1 for a photon-counting one), for :func:`sample_counts`. numpy in, numpy out.

    Example:
        >>> import numpy as np
        >>> from drct import physics
        >>> tube = physics.Spectrum.tube(80.0, {"aluminium": 2.0})
        >>> flat_panel = physics.Detector(i0=1e4, response="integrating")
        >>> physics.noise_factor({"water": np.array([0.0, 50.0])}, tube, flat_panel).round(2)  # hardened: larger
        array([1.12, 1.26])
        >>> physics.noise_factor({"water": np.array([0.0])}, tube, physics.Detector()) is None  # photon counting
        True
    """
    if detector.response == "counting" or spectrum is None:
        return None
    nd = float(detector.blur)
    second = blur(transmitted(paths, spectrum, detector.i0, 2), nd, det_ndim)
    first = blur(transmitted(paths, spectrum, detector.i0, 1), nd, det_ndim)
    if _is_drjit(second):
        second, first = second.numpy(), first.numpy()
    return np.asarray(second, dtype=np.float64) / np.maximum(np.asarray(first, dtype=np.float64), 1e-300)


def _like(value: np.ndarray, ref: Any, name: str = "map") -> Any:
    """A per-pixel numpy map as an array that combines with ``ref`` (a Dr.Jit tensor stays a tensor)."""
    if value.ndim == 0:
        return float(value)
    shape = tuple(int(n) for n in ref.shape)
    try:
        full = np.broadcast_to(value, shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {value.shape} does not fit arrays of shape {shape}; give one value or a "
            "per-pixel map of the detector's trailing axes, e.g. (rows, cols)"
        ) from None
    if _is_drjit(ref):
        dtype = np.float32 if dr.type_v(ref) == dr.VarType.Float32 else np.float64
        return type(ref)(full.astype(dtype))
    return value


def expected_readings(paths: Any, spectrum: Spectrum | None, detector: Detector, det_ndim: int | None = None) -> Any:
    """Noise-free readings ``Ī / k + d`` in digital units (no rounding or clamping): differentiable.

    Example:
        >>> import numpy as np
        >>> from drct import physics
        >>> det = physics.Detector(i0=1e4, gain=2.0, dark=100.0)
        >>> physics.expected_readings({None: np.array([0.0, np.log(4)])}, None, det)  # counts / gain + dark
        array([5100., 1350.])
    """
    counts = expected_counts(paths, spectrum, detector, det_ndim)
    gain = _like(detector.gain_array(), counts, "detector gain")
    return counts / gain + _like(detector.dark_array(), counts, "detector dark")


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(seed)


def _digitise(z: np.ndarray, detector: Detector) -> np.ndarray:
    r = z / _like(detector.gain_array(), z, "detector gain") + _like(detector.dark_array(), z, "detector dark")
    top = detector.max_reading
    if top is None:
        return r
    r = np.clip(np.rint(r), 0, top)
    return r.astype(np.uint16 if top <= 0xFFFF else np.uint32)


def sample_counts(expected: Any, detector: Detector, seed: Any, factor: Any = None) -> Any:
    """Noisy readings ``clamp(round((Poisson(Ī) + Normal(0, σ²)) / k + d), 0, 2^b − 1)``.

    Args:
        expected: Mean photons per pixel (:func:`expected_counts`), >= 0.
        detector: Gain, electronic noise, bit depth, dark offset.
        seed: Integer seed (or a ``numpy.random.Generator``) making the noise reproducible; None draws fresh
            entropy.
        factor: Variance/mean ratio f of the signal (:func:`noise_factor`; None: 1, photon counting). The shot
            noise is then ``f · Poisson(Ī / f)``: the mean and variance of the compound Poisson signal of an
            energy-integrating detector.

    Returns:
        numpy ``uint16``/``uint32`` readings when ``detector.bits`` is set, float64 otherwise; a Dr.Jit tensor
        of the input's type for Dr.Jit input (not differentiable).

    Example:
        >>> import numpy as np
        >>> from drct import physics
        >>> det = physics.Detector(i0=1e4, sigma=3.0, bits=16)
        >>> r = physics.sample_counts(np.full((2, 3), 1e4), det, seed=0)
        >>> r.dtype, r.shape, bool(abs(r.mean() - 1e4) < 300)  # Poisson: σ = 100 photons per pixel
        (dtype('uint16'), (2, 3), True)
    """
    drjit = _is_drjit(expected)
    lam = expected.numpy() if drjit else np.asarray(expected, dtype=np.float64)
    lam = lam.astype(np.float64)
    require_finite(lam, "expected counts")
    if np.any(lam < 0):
        raise ValueError(f"expected counts must be non-negative, got a minimum of {lam.min()}")
    rng = _rng(seed)
    if factor is None:
        z = rng.poisson(lam).astype(np.float64)
    else:
        f = np.broadcast_to(np.asarray(factor, dtype=np.float64), lam.shape)
        if not np.all(np.isfinite(f) & (f > 0)):
            raise ValueError("noise factor must be positive and finite")
        z = f * rng.poisson(lam / f)
    if detector.sigma > 0:
        z += rng.normal(0.0, float(detector.sigma), lam.shape)
    r = _digitise(z, detector)
    return type(expected)(r.astype(np.float64)) if drjit else r


def simulate_counts(
    paths: Any, spectrum: Spectrum | None, detector: Detector, seed: Any, det_ndim: int | None = None
) -> Any:
    """Noisy detector readings of an object: :func:`expected_counts` then :func:`sample_counts`.

    Example:
        >>> import numpy as np
        >>> from drct.physics import Detector, simulate_counts
        >>> r = simulate_counts(np.zeros((4, 5)), None, Detector(i0=100.0, bits=8), seed=1)
        >>> r.dtype.name, r.shape, bool(r.max() <= 255)
        ('uint16', (4, 5), True)
    """
    expected = expected_counts(paths, spectrum, detector, det_ndim)
    return sample_counts(expected, detector, seed, noise_factor(paths, spectrum, detector, det_ndim))


def _field(mean_photons: float, detector: Detector, shape: tuple[int, ...] | None, seed: Any, frames: int) -> Any:
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    if seed is None and frames == 1:
        mean = mean_photons / detector.gain_array() + detector.dark_array()
        return mean if shape is None else np.broadcast_to(mean, shape).copy()
    if shape is None:
        shape = np.broadcast_shapes(detector.gain_array().shape, detector.dark_array().shape)
        if shape == ():
            raise ValueError("a noisy flat/dark field needs a shape (e.g. the detector's (rows, cols))")
    rng = _rng(seed)
    lam = np.full((frames, *shape), mean_photons)
    return sample_counts(lam, detector, rng).astype(np.float64).mean(axis=0)


def flat_field(
    detector: Detector, shape: tuple[int, ...] | None = None, seed: Any = None, frames: int = 1
) -> np.ndarray:
    """The flat field (no object): ``i0 / k + d``, noise-free without ``seed``, else the mean of ``frames`` noisy
    frames of ``shape`` (as a scanner records it).

    Example:
        >>> from drct import physics
        >>> det = physics.Detector(i0=1e4, gain=2.0, dark=100.0)
        >>> float(physics.flat_field(det))  # noise-free: i0 / gain + dark
        5100.0
        >>> physics.flat_field(det, shape=(4, 6), seed=0, frames=8).shape  # the mean of 8 noisy frames
        (4, 6)
    """
    return _field(float(detector.i0), detector, shape, seed, frames)


def dark_field(
    detector: Detector, shape: tuple[int, ...] | None = None, seed: Any = None, frames: int = 1
) -> np.ndarray:
    """The dark field (source off): ``d``, noise-free without ``seed``, else the mean of ``frames`` noisy frames.

    Example:
        >>> from drct import physics
        >>> det = physics.Detector(i0=1e4, gain=2.0, dark=100.0)
        >>> float(physics.dark_field(det)), physics.dark_field(det, shape=(4, 6), seed=0).shape
        (100.0, (4, 6))
    """
    return _field(0.0, detector, shape, seed, frames)


def log_transform(readings: Any, flat: Any, dark: Any = 0.0, floor: float = 0.5) -> Any:
    """Line integrals from readings: ``−log(max(r − dark, floor) / max(flat − dark, floor))``.

    Args:
        readings: Detector readings (numpy of any numeric dtype, or a Dr.Jit tensor: differentiable).
        flat: Flat-field reading (a number, a per-pixel map, or an array of the readings' shape).
        dark: Dark-field reading, likewise.
        floor: Smallest signal above dark, in digital units; readings at or below dark (photon starvation) give
            the finite value ``−log(floor / (flat − dark))`` instead of infinity.

    Example:
        >>> import numpy as np
        >>> from drct import physics
        >>> physics.log_transform(np.array([2600.0, 1350.0]), flat=5100.0, dark=100.0).round(4)
        array([0.6931, 1.3863])
    """
    if not (np.isfinite(floor) and floor > 0):
        raise ValueError(f"floor must be a positive number of digital units, got {floor!r}")
    if _is_drjit(readings):
        r = readings
        f = flat if _is_drjit(flat) else _like(np.asarray(flat, dtype=np.float64), r, "flat field")
        d = dark if _is_drjit(dark) else _like(np.asarray(dark, dtype=np.float64), r, "dark field")
        return -dr.log(dr.maximum(r - d, floor) / dr.maximum(f - d, floor))
    r = np.asarray(readings, dtype=np.float64)
    f = np.asarray(_like(np.asarray(flat, dtype=np.float64), r, "flat field"))
    d = np.asarray(_like(np.asarray(dark, dtype=np.float64), r, "dark field"))
    return -np.log(np.maximum(r - d, floor) / np.maximum(f - d, floor))
