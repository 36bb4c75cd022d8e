"""torch modules of :mod:`drct.torch`: :class:`Projection`, :class:`BackProjection` and :class:`FBP`."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from ..autodiff import functorch_wrapped, torch_apply
from ..backend import cuda_available
from ..geometry.projection import ProjectionGeometry
from ..projector import Projector
from ..recon.fbp import backproject_filtered, weights_for
from ..recon.filters import filter_response, padded_length
from ._bridge import TWIN_NOTE, outside_compile
from ._functional import backproject, project
from ._geometry import (
    NAMES,
    TORCH_DTYPES,
    check_projector,
    device_type,
    kind_of,
    projector_info,
    projector_options,
    rebuild,
    split_batch,
)


# ---- modules --------------------------------------------------------------------------------------------------
class _OperatorModule(nn.Module):
    """A module around a projector ``A``, following torch's conventions.

    * It computes in the dtype and on the device of its input (float32/float64; CPU tensors on Dr.Jit's LLVM
      backend, CUDA tensors on its CUDA backend), like a torch module without weights: ``A`` gives the geometry,
      basis and options, and its twin of another dtype or backend is built on first use and kept. ``.to()``,
      ``.double()``, ``.float()`` and ``.cuda()`` move the buffers and parameters; an input on another device than
      them is refused with an error naming the tensor.
    * Pickling (``pickle``, ``copy.deepcopy``, ``torch.save`` of the whole module) stores ``A``'s geometries,
      basis and options, not Dr.Jit's state; unpickling rebuilds the projector. ``state_dict`` holds tensors only
      and loads with ``torch.load(..., weights_only=True)``; a whole pickled module needs ``weights_only=False``.
    """

    def __init__(self, A: Projector) -> None:
        super().__init__()
        self.A = check_projector(A)
        self._twins: dict[tuple[str, str], Projector] = {}

    def operator_for(self, value: Any, name: str) -> Projector:
        """``A`` in ``value``'s dtype and on its device's backend, after checking that the module's tensors are
        on that device."""
        dtype, backend = kind_of(value, name)
        for label, tensor in (*self.named_parameters(), *self.named_buffers()):
            if tensor.device != value.device:
                raise ValueError(
                    f"{name} is on torch device {str(value.device)!r}, but {type(self).__name__}.{label} is on "
                    f"{str(tensor.device)!r}; move the module (.to({str(value.device)!r})) or the tensor"
                )
        return _twin(self, dtype, backend)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["A"], state["_twins"] = projector_options(self.A), {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        options = state["A"]
        backend = options["backend"] if options["backend"] != "cuda" or cuda_available() else "llvm"
        super().__setstate__({**state, "A": rebuild(options, backend=backend)})


def _twin(module: _OperatorModule, dtype: str, backend: str) -> Projector:
    """``module.A`` in ``dtype`` on ``backend``; a twin not built yet is built between torch.compile's graphs."""
    A = module.A
    if (dtype, backend) == (A.dtype, A.backend):
        return A
    if (dtype, backend) not in module._twins:
        _build_twin(module, dtype, backend)
    return module._twins[dtype, backend]


@partial(outside_compile, reason=TWIN_NOTE)
def _build_twin(module: _OperatorModule, dtype: str, backend: str) -> None:
    module._twins[dtype, backend] = rebuild(projector_options(module.A), dtype=dtype, backend=backend)


class _GeometryModule(_OperatorModule):
    """Holds optional geometry values: buffers, or ``nn.Parameter`` when ``learnable``."""

    def __init__(self, A: Projector, geometry: Mapping[str, Any] | None, learnable: bool) -> None:
        super().__init__(A)
        self._geometry_names: list[str] = []
        dtype = TORCH_DTYPES[A.dtype]
        for name, value in (geometry or {}).items():
            if name not in NAMES:
                raise ValueError(f"unknown geometry parameter {name!r}; expected one of {list(NAMES)}")
            tensor = torch.as_tensor(value, dtype=dtype, device=device_type(A)).clone()
            if learnable:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)
            self._geometry_names.append(name)

    def geometry(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The stored geometry values, replaced or extended by ``overrides``."""
        values: dict[str, Any] = {name: getattr(self, name) for name in self._geometry_names}
        values.update(overrides)
        return values

    def extra_repr(self) -> str:
        names = ", ".join(self._geometry_names)
        return f"A={self.A!r}" + (f", geometry=[{names}]" if names else "")


class Projection(_GeometryModule):
    """``A x`` as a module: ``Projection(A)(x)``; optional learnable geometry parameters.

    Args:
        A: the projector.
        geometry: initial misalignment parameters (name → value), stored as buffers, or as ``nn.Parameter``
            when ``learnable`` (a torch optimiser then calibrates them). ``forward`` keywords override them.
        learnable: make ``geometry`` trainable parameters.

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.fan(np.linspace(0, 2 * np.pi, 8, endpoint=False), 24, 1.0, 40.0, 80.0))
        >>> layer = ct.torch.Projection(A, geometry={"det_shift_u": 0.0}, learnable=True)
        >>> [name for name, _ in layer.named_parameters()]
        ['det_shift_u']
        >>> layer(torch.ones(16, 16)).shape
        torch.Size([8, 24])
    """

    def __init__(self, A: Projector, geometry: Mapping[str, Any] | None = None, learnable: bool = False) -> None:
        super().__init__(A, geometry, learnable)

    def forward(self, x: torch.Tensor, **geometry: Any) -> torch.Tensor:
        return project(x, self.operator_for(x, "x (volume)"), **self.geometry(geometry))


class BackProjection(_GeometryModule):
    """``A.T y`` as a module: ``BackProjection(A)(y)`` (arguments as for :class:`Projection`).

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 24))
        >>> ct.torch.BackProjection(A)(torch.ones(3, 8, 24)).shape
        torch.Size([3, 16, 16])
    """

    def __init__(self, A: Projector, geometry: Mapping[str, Any] | None = None, learnable: bool = False) -> None:
        super().__init__(A, geometry, learnable)

    def forward(self, y: torch.Tensor, **geometry: Any) -> torch.Tensor:
        return backproject(y, self.operator_for(y, "y (projections)"), **self.geometry(geometry))


# ---- FBP ------------------------------------------------------------------------------------------------------
class FBP(_OperatorModule):
    """Filtered backprojection in physical units, ``FBP(A)(y)`` equal to :func:`drct.fbp` ``(A, y)``.

    The weights, the filter's frequency response and the backprojection step are those of
    :mod:`drct.recon.fbp` (pre-weights, Parker weights for short scans, angular weights and scale); the
    filtering runs in torch (``torch.fft``, zero-padded to :func:`drct.recon.padded_length`), so the frequency
    response (one real value per ``rfft`` bin) can be trained by a torch optimiser — the learned-filter
    baseline of PYRO-NN:

    * ``learnable=True`` (or ``"gain"``): ``self.gain``, an ``nn.Parameter`` of ones, multiplies the fixed
      response of ``filter`` (the filter starts as exactly that response). Relative changes per frequency
      are well scaled for Adam: the ramp spans 3 decades from DC to Nyquist, and a raw response trains slowly.
    * ``learnable="response"``: ``self.response`` itself is the ``nn.Parameter``, initialised from ``filter``.
    * ``learnable="redundancy"`` (fan/cone short scans): ``self.redundancy``, an ``nn.Parameter`` of ones of
      shape ``(views, cols)`` (2D) or ``(views, 1, cols)`` (3D, shared by the rows: Parker's weights depend on
      the fan angle alone), replaces Parker's weights (:attr:`drct.recon.weights.FBPWeights.redundancy`) in
      the pre-weights; the cosine and angular weights stay fixed. Starting at ones (no redundancy handling),
      training learns the short-scan weights from data — the FDK experiment of PYRO-NN
      (``examples/learned/fdk_weights.py``).

    :meth:`filter_response` gives the response in use.

    2D parallel beams backproject with :func:`backproject` (a batch in one launch; geometry tensors such as
    ``det_shift_u`` may be passed to ``forward``). Other geometries use :mod:`drct.recon`'s backprojection
    step sample by sample, with the nominal geometry.

    Args:
        A: the projector (its grid, geometry and basis define the reconstruction).
        filter: ``"ramp"`` (= ``"ram-lak"``), ``"shepp-logan"``, ``"cosine"``, ``"hamming"`` or ``"hann"``.
        cutoff: the window's cut-off as a fraction of the Nyquist frequency, in (0, 1].
        learnable: ``False``, ``True``/``"gain"`` (train a per-frequency gain), ``"response"`` (train the
            response itself) or ``"redundancy"`` (train the short-scan redundancy weights).

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 48, endpoint=False), 48), basis="voxel")
        >>> x = torch.zeros(32, 32); x[8:24, 8:24] = 0.02
        >>> fbp = ct.torch.FBP(A, learnable=True)
        >>> round(float(fbp(ct.torch.project(x, A))[12:20, 12:20].mean().detach()), 3)
        0.02
        >>> fbp.gain.shape, fbp.filter_response().shape
        (torch.Size([65]), torch.Size([65]))
    """

    response: torch.Tensor
    gain: torch.Tensor | None
    redundancy: torch.Tensor | None
    pre: torch.Tensor
    post: torch.Tensor

    def __init__(self, A: Projector, filter: str = "ramp", cutoff: float = 1.0, learnable: bool | str = False) -> None:
        super().__init__(A)
        if A.batch is not None:
            raise ValueError(f"FBP needs a projector of one geometry, this one stacks batch={A.batch} samples")
        name = "ram-lak" if isinstance(filter, str) and filter.lower() == "ramp" else filter
        weights = weights_for(A)
        dtype, device = TORCH_DTYPES[A.dtype], device_type(A)
        self.filter, self.cutoff = name, cutoff
        self.cols = A.range_shape[-1]
        self.padded = padded_length(self.cols)
        self.spacing = float(weights.spacing)
        self._fast = isinstance(A.pg, ProjectionGeometry) and A.pg.beam == "parallel" and A.pg.ndim == 2
        response = torch.as_tensor(
            filter_response(self.padded, weights.spacing, name, cutoff, weights.curved), dtype=dtype, device=device
        )
        if learnable not in (False, True, "gain", "response", "redundancy"):
            raise ValueError(f'learnable must be False, True, "gain", "response" or "redundancy", got {learnable!r}')
        if learnable == "response":
            self.response = nn.Parameter(response)
        else:
            self.register_buffer("response", response)
        self.gain = nn.Parameter(torch.ones_like(response)) if learnable in (True, "gain") else None
        pre, self.redundancy = weights.pre, None
        if learnable == "redundancy":
            if weights.redundancy is None:
                raise ValueError(
                    'learnable="redundancy" needs a fan- or cone-beam short scan (an orbit of less than 2π), '
                    f"this geometry has no redundancy weights to learn: {A.pg!r}"
                )
            if not np.all(weights.redundancy > 0):  # Parker's weights vanish only outside the scan
                raise ValueError("the short-scan weights of this geometry reach 0: cannot separate them from pre")
            pre = weights.pre / weights.redundancy
            shape = (pre.shape[0], 1, pre.shape[-1]) if pre.ndim == 3 else pre.shape
            self.redundancy = nn.Parameter(torch.ones(shape, dtype=dtype, device=device))
        self._has_pre = bool(np.any(pre != 1)) or self.redundancy is not None
        # copies: torch.as_tensor would share memory with the float64 arrays of drct.recon's per-projector cache,
        # which load_state_dict or an in-place change of the buffers would then rewrite under ct.fbp
        self.register_buffer("pre", torch.tensor(pre, dtype=dtype, device=device))
        self.register_buffer("post", torch.tensor(weights.post, dtype=dtype, device=device))

    def filter_response(self) -> torch.Tensor:
        """The frequency response in use (``n // 2 + 1`` values for ``torch.fft.rfft`` of ``n`` samples, 1/mm²
        as in :func:`drct.recon.filter_response`)."""
        return self.response if self.gain is None else self.response * self.gain

    def filtered(self, y: torch.Tensor) -> torch.Tensor:
        """The pre-weighted, filtered projections (before the post-weights and the backprojection), in ``y``'s
        dtype."""
        if self._has_pre:
            y = y * (self.pre if self.redundancy is None else self.pre * self.redundancy).to(y.dtype)
        spectrum = torch.fft.rfft(y, n=self.padded, dim=-1) * self.filter_response().to(y.dtype)
        return torch.fft.irfft(spectrum, n=self.padded, dim=-1)[..., : self.cols] * self.spacing

    def forward(self, y: torch.Tensor, **geometry: Any) -> torch.Tensor:
        """Reconstruct ``y`` of shape ``(*batch, *A.range_shape)``; returns ``(*batch, *A.domain_shape)``."""
        A = self.operator_for(y, "y (projections)")
        info = projector_info(A)  # plain values: constants under torch.compile
        batch = split_batch(y, "y (projections)", info.range_shape)
        q = self.filtered(y)
        if self._fast:
            return backproject(q * self.post.to(y.dtype), A, **geometry)
        if any(v is not None for v in geometry.values()):
            raise ValueError(
                f"geometry tensors {sorted(geometry)} are supported by ct.torch.FBP for 2D parallel beams only; "
                f"this projector has {info.geometry}"
            )
        flat = q.reshape(-1, *info.range_shape)
        return _backproject_each(A, flat).reshape(*batch, *info.domain_shape)

    def extra_repr(self) -> str:
        learn = "response" if isinstance(self.response, nn.Parameter) else self.gain is not None
        learn = "redundancy" if self.redundancy is not None else learn
        return f"A={self.A!r}, filter={self.filter!r}, cutoff={self.cutoff}, learnable={learn!r}"


@outside_compile
def _backproject_each(A: Projector, flat: torch.Tensor) -> torch.Tensor:
    """:func:`drct.recon.fbp.backproject_filtered` of each filtered sample (``post`` included, from drct.recon's
    weights of ``A``), stacked; between torch.compile's graphs."""
    if functorch_wrapped(flat):
        raise RuntimeError(
            "ct.torch.FBP of fan and cone beams backprojects view by view through drct.recon, which has no "
            "torch.func rule; torch.func transforms work for 2D parallel beams and for ct.torch.project/backproject"
        )
    weights = weights_for(A)

    def step(values: Any) -> Any:
        return backproject_filtered(A, values, weights)

    return torch.stack([torch_apply(step, A.backend, sample) for sample in flat])
