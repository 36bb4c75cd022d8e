"""Ramp filters for filtered backprojection, and their (self-adjoint, differentiable) application.

The filters are built from the band-limited discrete ramp of Ram and Lak (its exact spatial samples
``h[0] = 1/(4Δ²)``, ``h[n odd] = -1/(n π Δ)²``, ``h[n even] = 0``), Fourier-transformed on the padded grid (a
sampled ``|f|`` would have a zero DC term, which offsets the whole image), then multiplied by a window. A
filtered row is ``q = Δ · (h ⊛ p)``: with ``Δ`` in mm and ``p`` dimensionless, ``q`` is in 1/mm.

For equiangular (curved) detectors the row coordinate is the fan angle ``γ`` (spacing ``Δγ`` radians) and the
spatial kernel is multiplied by ``(γ / sin γ)²`` (the exact fan-beam form of the ramp).

Where the filter runs (:func:`filter_tensor`): on the CPU (LLVM backend) one batched ``scipy.fft`` over all rows
(:func:`filter_rows`), which was 3-10 times faster than the same filter as a Dr.Jit convolution on 2 CPU cores
(``benchmarks/bench_fbp.py``; Dr.Jit has no FFT); on
CUDA the convolution :func:`drjit.convolve` with the filter's spatial taps (:func:`spatial_kernel`), which stays on
the device. Both give the same rows to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np
import scipy.fft

from ..memory import require_memory

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")


def padded_length(cols: int) -> int:
    """The FFT length used to filter rows of ``cols`` pixels: the power of two ``>= 2 * cols`` (no wrap-around).

    Example:
        >>> padded_length(256)
        512
    """
    if int(cols) < 1:
        raise ValueError(f"cols must be >= 1, got {cols!r}")
    return max(64, 1 << int(np.ceil(np.log2(2 * int(cols)))))


def _check(filter: str, cutoff: float) -> None:
    if not isinstance(filter, str) or filter.lower() not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    if isinstance(cutoff, bool) or not (isinstance(cutoff, (int, float)) and np.isfinite(cutoff) and 0 < cutoff <= 1):
        raise ValueError(f"cutoff must be a number in (0, 1] (a fraction of the Nyquist frequency), got {cutoff!r}")


def filter_response(
    n: int, spacing: float, filter: str = "ram-lak", cutoff: float = 1.0, curved: bool = False
) -> np.ndarray:
    """Frequency response of an FBP filter on a padded row of ``n`` samples (for ``np.fft.rfft``), in 1/mm².

    ``np.fft.irfft(np.fft.rfft(p, n) * H, n)[:cols] * spacing`` is ``Δ · (h ⊛ p)``, the filtered row.

    Args:
        n: padded row length (see :func:`padded_length`).
        spacing: sample spacing ``Δ``: mm for flat detectors and parallel beams, radians (``Δγ``) when ``curved``.
        filter: ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"`` or ``"hann"``.
        cutoff: the window's cut-off as a fraction of the Nyquist frequency; higher frequencies are zeroed.
        curved: equiangular fan (spatial kernel times ``(γ / sin γ)²``).

    Returns:
        ``n // 2 + 1`` real values.

    Example:
        >>> H = filter_response(512, 1.0)
        >>> H.shape, round(float(H[-1]), 2)  # about 1/(2Δ²) at the Nyquist frequency
        ((257,), 0.5)
    """
    _check(filter, cutoff)
    if not (np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be finite and > 0, got {spacing!r}")
    n = int(n)
    if n < 2 or n % 2:
        raise ValueError(f"n must be an even padded length >= 2, got {n}")
    k = np.arange(n)
    k = np.where(k <= n // 2, k, k - n)  # signed sample offsets on the periodic grid
    h = np.zeros(n)
    h[0] = 1.0 / (4.0 * spacing**2)
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd] * spacing) ** 2
    ramp = np.fft.rfft(h).real * spacing  # exact discrete ramp, = |f| below Nyquist up to the band limit
    f = np.fft.rfftfreq(n)  # cycles per sample, 0..0.5
    fc = 0.5 * cutoff
    x = f / fc
    name = filter.lower()
    if name == "ram-lak":
        window = np.ones_like(f)
    elif name == "shepp-logan":
        window = np.sinc(x / 2)
    elif name == "cosine":
        window = np.cos(np.pi * x / 2)
    elif name == "hamming":
        window = 0.54 + 0.46 * np.cos(np.pi * x)
    else:  # hann
        window = 0.5 * (1 + np.cos(np.pi * x))
    window = np.where(f <= fc + 1e-12, window, 0.0)
    response = ramp * window / spacing
    if curved:
        kernel = np.fft.irfft(response, n)
        gamma = k * spacing
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(k == 0, 1.0, (gamma / np.sin(gamma)) ** 2)
        response = np.fft.rfft(kernel * factor).real
    return response


def spatial_kernel(
    cols: int, spacing: float, filter: str = "ram-lak", cutoff: float = 1.0, curved: bool = False
) -> np.ndarray:
    """The ``2 * cols - 1`` taps ``Δ · h[d]``, ``d = -(cols - 1) .. cols - 1``, whose zero-padded convolution with a
    row of ``cols`` samples is :func:`filter_rows` (the padded FFT length is at least ``2 * cols``, so its circular
    convolution never wraps around). The kernel is even: convolution and correlation agree.

    Example:
        >>> taps = spatial_kernel(4, 1.0)
        >>> taps.shape, round(float(taps[3]), 4), round(float(taps[2]), 4)  # h[0] = 1/(4Δ²), h[±1] = -1/(πΔ)²
        ((7,), 0.25, -0.1013)
    """
    n = padded_length(cols)
    kernel = np.fft.irfft(filter_response(n, spacing, filter, cutoff, curved), n)
    return kernel[np.arange(-(int(cols) - 1), int(cols)) % n] * spacing


FILTER_BLOCK_BYTES = 64 << 20  # the padded spectra of at most this many bytes at a time (filter_rows)


def filter_rows(p: np.ndarray, spacing: float, filter: str = "ram-lak", cutoff: float = 1.0, curved: bool = False):
    """Filter the last axis of ``p`` (numpy): ``Δ · (h ⊛ p)`` with zero padding.

    One batched real FFT over all rows (``scipy.fft`` with a thread per core), in float32 for float32 rows
    (float32 results; 2-3 times less CPU time than float64 at 180 x 128 x 192, differences ~3e-7 of the largest
    value) and in float64 for anything else.

    Example:
        >>> import numpy as np
        >>> q = filter_rows(np.ones((2, 16)), 0.5)
        >>> q.shape, q.dtype
        ((2, 16), dtype('float64'))
    """
    p = np.asarray(p)
    cols = p.shape[-1]
    n = padded_length(cols)
    dtype = np.float32 if p.dtype == np.float32 else np.float64
    response = filter_response(n, spacing, filter, cutoff, curved).astype(dtype)
    require_memory(p.size * np.dtype(dtype).itemsize, f"the filtered projections ({p.shape}, {np.dtype(dtype).name})")
    out = np.empty(p.shape, dtype)
    rows, filtered = p.reshape(-1, cols), out.reshape(-1, cols)
    # rows in blocks: the padded spectra of a whole scan (720 x 1024² rows: 6 GB complex64) never exist at once
    block = max(1, FILTER_BLOCK_BYTES // (n * 2 * np.dtype(dtype).itemsize))
    for start in range(0, rows.shape[0], block):
        part = rows[start : start + block].astype(dtype, copy=False)
        spectrum = np.asarray(scipy.fft.rfft(part, n, axis=-1, workers=-1)) * response
        filtered[start : start + block] = np.asarray(scipy.fft.irfft(spectrum, n, axis=-1, workers=-1))[:, :cols]
    out *= dtype(spacing)
    return out


class _FilterOp(dr.CustomOp):
    """Row filtering of a flat Dr.Jit array. The Toeplitz matrix of an even kernel is symmetric, so the same
    filter is its own adjoint and its own JVP."""

    def eval(self, p: Any, shape: tuple[int, ...], args: tuple[float, str, float, bool]) -> Any:
        self.shape, self.args = shape, args
        self.cls = type(p)
        return self._apply(p)

    def _apply(self, values: Any) -> Any:
        host = np.asarray(dr.detach(values).numpy()).reshape(self.shape)
        out = filter_rows(host, *self.args).astype(host.dtype).reshape(-1)
        result = self.cls(out) * dr.opaque(self.cls, 1)
        dr.eval(result)
        return result

    def forward(self) -> None:
        self.set_grad_out(self._apply(self.grad_in("p")))

    def backward(self) -> None:
        self.set_grad_in("p", self._apply(self.grad_out()))

    def name(self) -> str:
        return "fbp_filter"


def filter_tensor(
    p: Any,
    spacing: float,
    filter: str = "ram-lak",
    cutoff: float = 1.0,
    curved: bool = False,
    device: bool | None = None,
) -> Any:
    """:func:`filter_rows` on a Dr.Jit tensor, differentiable (forward and reverse mode).

    Args:
        device: ``True``: a Dr.Jit convolution with :func:`spatial_kernel` (no host round trip); ``False``:
            numpy's FFT on the host; ``None`` (default): the device on CUDA, the host on the CPU, where it is
            faster (module docstring).

    Example:
        >>> import numpy as np, drct as ct
        >>> t = ct.Projector(ct.VolumeGeometry((4, 4)), ct.parallel([0.0], 16)).types
        >>> p = t.Tensor(np.ones((2, 16), np.float32))
        >>> host, dev = filter_tensor(p, 0.5), filter_tensor(p, 0.5, device=True)
        >>> bool(np.allclose(host.numpy(), dev.numpy(), atol=1e-5))
        True
    """
    _check(filter, cutoff)
    shape = tuple(int(n) for n in p.shape)
    if device is None:
        device = dr.backend_v(p) == dr.JitBackend.CUDA
    if device:
        taps = spatial_kernel(shape[-1], spacing, filter, cutoff, curved)
        return dr.convolve(p, taps.tolist(), axis=len(shape) - 1)
    flat = dr.custom(_FilterOp, p.array, shape, (float(spacing), filter, float(cutoff), bool(curved)))
    return type(p)(flat, shape)
