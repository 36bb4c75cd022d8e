"""The PET system model ``ȳ = A x``: line integrals of the activity along every LOR (with time of flight: per TOF
bin), times attenuation and normalisation factors, summed into sinogram bins or listed per event.

For member LOR ``m`` of bin ``i`` (see :mod:`drct.pet.sinogram`): ``(A x)_i = n_i Σ_m a_m (P x)_m`` with ``P`` the
exact line integral of the voxel (or B-spline) activity along the LOR — :class:`drct.Projector` on the LORs as a
ray list — or, with TOF, the exact integral of each TOF bin's kernel along it (:mod:`drct.pet.kernel`);
``a_m = exp(-∫ μ)`` along the same LOR through the CT projector on the μ-map; ``n_i`` the normalisation.
``A.T`` applies the same factors and the transpose of ``P``: it is the exact transpose of ``A``. The additive
randoms and scatter ``s`` of ``y ~ Poisson(A x + s)`` are not part of ``A`` (they are data, not a linear map):
pass them to :func:`drct.pet.log_likelihood` and to the EM solvers (``additive=``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import drjit as dr
import numpy as np

from ..arrays import require_finite_tensor, to_tensor
from ..backend import Types, canonical_dtype, drjit_module, get_backend, types, upload
from ..concurrency import get_deterministic, launches
from ..errors import require_finite
from ..geometry.factories import rays
from ..geometry.volume import VolumeGeometry
from ..memory import require_memory
from ..operator import Adjoint, AllViewsHere, ArrayCalls
from ..projector import Projector
from ..volume import basis_degree
from ._checks import nonnegative
from .kernel import TofEngine, TofOp
from .sinogram import ListmodeGeometry, Lors, SinogramGeometry, sinogram
from .tof import TOF

PETGeometry = SinogramGeometry | ListmodeGeometry


def check_inside_ring(vg: VolumeGeometry, radius: float, what: str, basis: str = "voxel") -> None:
    """Refuse a grid whose model reaches the crystals: a LOR is the chord between two crystals, and drct
    integrates the whole line, which is the same only while the model's support (the voxels, plus ``n/2`` voxels
    for a B-spline of degree ``n``) lies inside the ring."""
    if vg.ndim != 3:
        raise ValueError(f"PET needs a 3D {what} grid (nz, ny, nx), got shape {vg.shape}")
    reach_out = (basis_degree(basis) + 1) / 2
    corners = [
        (c - reach_out * h, c + (n - 1 + reach_out) * h)
        for c, h, n in zip(vg.first_center[:2], vg.spacing_xyz[:2], vg.shape_xyz[:2], strict=True)
    ]
    reach = max(float(np.hypot(x, y)) for x in corners[0] for y in corners[1])
    if reach >= radius:
        raise ValueError(
            f"the {what} grid reaches {reach:.6g} mm from the scanner axis, but the crystals are at {radius:g} mm: "
            "it must lie inside the ring (crop it or use a smaller voxel size)"
        )


def lor_endpoints(geometry: PETGeometry, lors: Lors) -> tuple[np.ndarray, np.ndarray]:
    """``(M, 3)`` float64 end points of the member LORs; padding members get a line parallel to the axis outside
    the ring (it misses every grid, which :func:`check_inside_ring` keeps inside)."""
    pos = geometry.scanner.positions()
    p1, p2 = pos[lors.crystal_a], pos[lors.crystal_b]
    pad = ~lors.valid
    if pad.any():
        far = 2.0 * geometry.scanner.radius + 1.0
        p1[pad], p2[pad] = (far, 0.0, -1.0), (far, 0.0, 1.0)
    return p1, p2


def object_frame(xyz: tuple[Any, Any, Any], rotation: Any, shift: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    """Points ``xyz`` (components: numpy or Dr.Jit arrays) in the frame of an object rotated by ``rotation``
    (radians, about the ``z`` axis) and then moved by ``shift`` (mm): ``Rz(-rotation) (p - shift)``; the
    scanner sees the moved object along a LOR as the fixed object along the LOR moved back.

    Example:
        >>> import numpy as np
        >>> from drct.pet.projector import object_frame
        >>> [round(float(c), 6) for c in object_frame((1.0, 0.0, 2.0), np.pi / 2, (0.0, 0.0, 1.0))]
        [0.0, -1.0, 1.0]
    """
    c, s = (np.cos(rotation), np.sin(rotation)) if not dr.is_array_v(rotation) else (dr.cos(rotation), dr.sin(rotation))
    qx, qy, qz = (p - d for p, d in zip(xyz, shift, strict=True))
    return c * qx + s * qy, c * qy - s * qx, qz


def line_integrals(vg: VolumeGeometry, values: Any, p1: np.ndarray, p2: np.ndarray, basis: str, t: Types) -> Any:
    """``∫ values`` along each line ``p1 → p2`` (flat ``t.Float``): the CT projector on a ray list."""
    op = Projector(vg, rays(p1, p2 - p1), basis=basis, dtype=t.dtype, backend=t.backend)
    return op.forward_tensor(t.Tensor(values, vg.shape)).array


class PETProjector(ArrayCalls, AllViewsHere):
    """The PET forward model ``A`` (see the module docstring) of a sinogram or listmode geometry, with ``A.T`` its
    exact transpose; ``ct.recon.mlem`` / ``ct.recon.osem`` take it as ``A`` (ordered subsets of views, or of
    events in listmode). ``A(x)`` and ``A.T(y)`` take numpy, torch or Dr.Jit arrays and return the same kind.

    Args:
        vg: the activity grid (3D, inside the ring).
        geometry: :func:`drct.pet.sinogram` or :func:`drct.pet.listmode`.
        tof: a :class:`~drct.pet.TOF` binning, or None. Sinograms gain a last axis of ``tof.bins``; listmode
            events need their TOF bin (``listmode(..., tof_bin=...)``). TOF needs ``basis="voxel"``.
        mu: attenuation map (1/mm) on ``mu_vg`` (default ``vg``), or None.
        normalisation: multiplicative factors per bin (sinogram shape without the TOF axis) or per event
            (efficiencies, acquisition time), default 1.
        sensitivity: listmode only: ``Σ`` over every LOR of the scanner of ``n · a · P`` (an image on ``vg``),
            which EM needs instead of the sum over the events. Default: computed from the scanner's full span-1
            sinogram with ``mu`` (so required when ``normalisation`` is given).
        basis: activity model, ``"voxel"`` (default) or a B-spline basis of :class:`drct.Projector` (non-TOF).
        mu_basis: the μ-map's model (default ``"voxel"``).
        dtype, backend, deterministic: as in :class:`drct.Projector`.

    Example:
        >>> import numpy as np, drct as ct
        >>> sc = ct.pet.scanner(rings=4, crystals_per_ring=32, radius=60.0, crystal_size=4.0)
        >>> vg = ct.VolumeGeometry((4, 16, 16), voxel_size=4.0)
        >>> tof = ct.pet.TOF(bins=9, bin_width=15.0, fwhm=30.0)
        >>> A = ct.pet.PETProjector(vg, ct.pet.sinogram(sc, span=3), tof=tof)
        >>> y = A(np.ones(vg.shape, np.float32))
        >>> y.shape, A.T(y).shape
        ((16, 13, 31, 9), (4, 16, 16))
    """

    x_name = "x (activity)"
    y_name = "y (PET data)"

    def __new__(cls, vg: VolumeGeometry, geometry: PETGeometry, *args: Any, **kwargs: Any) -> PETProjector:
        listmode = cls is PETProjector and isinstance(geometry, ListmodeGeometry)
        return object.__new__(ListmodePETProjector if listmode else cls)

    def __init__(
        self,
        vg: VolumeGeometry,
        geometry: PETGeometry,
        tof: TOF | None = None,
        mu: Any = None,
        mu_vg: VolumeGeometry | None = None,
        normalisation: Any = None,
        sensitivity: Any = None,
        basis: str = "voxel",
        mu_basis: str = "voxel",
        dtype: Any = "float32",
        backend: str | None = None,
        deterministic: bool | None = None,
        _fraction: float = 1.0,
        _pose: tuple[float, tuple[float, float, float]] | None = None,
    ) -> None:
        # listmode operators are ListmodePETProjector instances (see __new__)
        if not isinstance(vg, VolumeGeometry):
            raise TypeError(f"vg must be a drct.VolumeGeometry, got {type(vg).__name__}")
        if not isinstance(geometry, (SinogramGeometry, ListmodeGeometry)):
            raise TypeError(
                f"geometry must come from drct.pet.sinogram or drct.pet.listmode, got {type(geometry).__name__}"
            )
        if tof is not None and not isinstance(tof, TOF):
            raise TypeError(f"tof must be a drct.pet.TOF or None, got {tof!r}")
        if tof is not None and basis != "voxel":
            raise ValueError(f"time of flight is integrated exactly for basis='voxel' only, got basis={basis!r}")
        self.listmode = isinstance(geometry, ListmodeGeometry)
        event_bins = geometry.tof_bin if isinstance(geometry, ListmodeGeometry) else None
        if self.listmode and (event_bins is None) != (tof is None):
            raise ValueError("listmode with TOF needs both tof=... and the events' tof_bin (and neither without)")
        if tof is not None and event_bins is not None:
            bad = (event_bins < 0) | (event_bins >= tof.bins)
            if bad.any():
                raise ValueError(f"tof_bin of event {int(np.argmax(bad))} is outside [0, {tof.bins})")
        radius = geometry.scanner.radius
        check_inside_ring(vg, radius, "activity", basis)
        self.vg, self.pg, self.tof, self.basis, self.mu_basis = vg, geometry, tof, basis, mu_basis
        self.mu_vg = vg if mu_vg is None else mu_vg
        self.types: Types = types(canonical_dtype(dtype), backend or get_backend())
        if deterministic is not None and not isinstance(deterministic, bool):
            raise TypeError(f"deterministic must be True, False or None, got {deterministic!r}")
        self.deterministic = deterministic
        self._fraction = _fraction
        t = self.types
        lors = geometry.lors()
        self.group = lors.group
        p1, p2 = lor_endpoints(geometry, lors)
        self._pose = _pose
        if _pose is not None:  # the object moved: its LORs moved back (padding members stay outside)
            for p in (p1, p2):
                p[lors.valid] = np.stack(object_frame(tuple(p[lors.valid].T), *_pose), axis=1)
        item = self.types.itemsize
        require_memory(lors.count * (8 * 8 + 2 * item * self.tof_bins), f"the LORs of {geometry!r}")
        self._mu = None
        weight = lors.valid.astype(np.float64)
        if normalisation is not None:
            n = nonnegative(normalisation, geometry.shape, "normalisation", "one factor per bin")
            self._normalisation = n
            weight = weight * np.repeat(n.reshape(-1), self.group)
        else:
            self._normalisation = None
        self._base_weight = self._weight = upload(t.Float, weight)
        self._lines = (p1, p2)
        self._mu_rays: Projector | None = None
        if mu is not None:
            tensor, _ = to_tensor(mu, self.mu_vg.shape, t, "mu (attenuation map)")
            self._mu = dr.detach(tensor)
            self._weight = self._attenuated(self._mu)
            dr.eval(self._weight)
        if tof is None:
            self._rays: Projector | None = Projector(
                vg, rays(p1, p2 - p1), basis, t.dtype, t.backend, deterministic=deterministic
            )
            self._tof: TofEngine | None = None
        else:
            self._rays = None
            self._tof = TofEngine(vg, p1, p2, tof, t, lors.tof_bin)
        self._sensitivity = None
        if self.listmode:
            if sensitivity is None and normalisation is not None:
                raise ValueError(
                    "listmode with a normalisation needs sensitivity= (the backprojection of the normalisation of "
                    "every LOR of the scanner): EM cannot derive it from the events"
                )
            self._sensitivity = sensitivity
        elif sensitivity is not None:
            raise ValueError("sensitivity= is for listmode; a sinogram's sensitivity is A.T of ones")

    # -- shapes -------------------------------------------------------------------------------------------------
    @property
    def tof_bins(self) -> int:
        """TOF values per LOR in the range: ``tof.bins`` for a TOF sinogram, else 1."""
        return 1 if self.tof is None or self.listmode else self.tof.bins

    @property
    def domain_shape(self) -> tuple[int, ...]:
        return self.vg.shape

    @property
    def range_shape(self) -> tuple[int, ...]:
        """``(views, planes, radial[, tof bins])`` or ``(events,)``."""
        return self.pg.shape if self.tof_bins == 1 else (*self.pg.shape, self.tof_bins)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(np.prod(self.range_shape)), self.vg.size)

    @property
    def T(self) -> Adjoint[PETProjector]:
        return Adjoint(self)

    def _options(self) -> dict[str, Any]:
        return {
            "tof": self.tof,
            "mu": self._mu,
            "mu_vg": self.mu_vg,
            "basis": self.basis,
            "mu_basis": self.mu_basis,
            "dtype": self.dtype,
            "backend": self.backend,
            "deterministic": self.deterministic,
        }

    def select_views(self, views: Any) -> PETProjector:
        """The operator of a subset of views (or events, listmode) with the same factors, e.g. for OSEM."""
        idx = np.asarray(views, dtype=np.int64).reshape(-1)
        norm = None if self._normalisation is None else self._normalisation[idx]
        geometry = self.pg.select_views(idx)
        if not self.listmode:
            return PETProjector(self.vg, geometry, normalisation=norm, **self._options())
        assert isinstance(self, ListmodePETProjector)
        return PETProjector(
            self.vg,
            geometry,
            normalisation=norm,
            sensitivity=self.full_sensitivity(),
            _fraction=self._fraction * idx.size / self.pg.num_views,
            **self._options(),
        )

    def perturbed(self, radius: Any = None, shift: Any = None, rotation: Any = None) -> PETProjector:
        """The operator for the scanner's ring ``radius`` changed by ``radius`` (mm) and the object (activity and
        μ-map) rotated by ``rotation`` (radians, about the scanner axis ``z``, around the origin) and then moved by
        ``shift`` (mm, ``(x, y, z)``): numbers / numpy arrays, or Dr.Jit ``Float64`` (``radius``, ``rotation``)
        and ``Array3f64`` (``shift``) arrays of width 1. With Dr.Jit arrays (non-TOF sinograms), ``A`` of the
        result is differentiable w.r.t. them (reverse and forward mode) through the CT projector's geometry
        derivatives on the moved LORs, attenuation factors included; with torch tensors use
        :func:`drct.emission.project`. Sinogram geometries only (a listmode sensitivity would not move).

        Example:
            >>> import numpy as np, drjit as dr, drct as ct
            >>> from drct.backend import drjit_module
            >>> sc = ct.pet.scanner(rings=2, crystals_per_ring=16, radius=50.0)
            >>> vg = ct.VolumeGeometry((2, 8, 8), voxel_size=4.0)
            >>> A = ct.pet.PETProjector(vg, ct.pet.sinogram(sc), dtype="float64")
            >>> dx = drjit_module().Array3f64(0.0, 0.0, 0.0)
            >>> dr.enable_grad(dx)
            >>> x = np.zeros(vg.shape); x[:, 2, 5] = 1.0
            >>> y = A.perturbed(shift=dx).forward_tensor(A.types.Tensor(x))
            >>> dr.backward(dr.sum(y.array * dr.arange(A.types.Float, y.array.shape[0])))
            >>> bool(dr.norm(dr.grad(dx))[0] > 0)
            True
        """
        if self.listmode:
            raise ValueError(
                "perturbed: geometry changes are for sinogram geometries (the listmode sensitivity is fixed)"
            )
        tracked = [v for v in (radius, shift, rotation) if v is not None and dr.is_array_v(v)]
        if tracked and self.tof is not None:
            raise ValueError(
                "perturbed: geometry derivatives (Dr.Jit arrays) are for non-TOF PET; pass numbers for TOF"
            )

        def host(value: Any, size: int, name: str) -> np.ndarray:
            if value is None:
                return np.zeros(size)
            arr = np.asarray(dr.detach(value).numpy() if dr.is_array_v(value) else value, dtype=np.float64)
            if arr.size != size:
                raise ValueError(f"perturbed: {name} must hold {size} number(s), got shape {arr.shape}")
            require_finite(arr, f"perturbed {name}")
            return arr.reshape(size)

        d_radius, move, turn = host(radius, 1, "radius")[0], host(shift, 3, "shift"), host(rotation, 1, "rotation")[0]
        sc = self.pg.scanner
        if sc.radius + d_radius <= 0:
            raise ValueError(f"perturbed: the ring radius {sc.radius:g} + {d_radius:g} mm must stay > 0")
        geometry = replace(self.pg, scanner=replace(sc, radius=sc.radius + d_radius))
        # drct integrates whole lines: the moved object must stay inside the ring (a rotation about z keeps the
        # distances from the axis, a shift moves them by at most its transaxial length)
        room = sc.radius + d_radius - float(np.hypot(move[0], move[1]))
        for grid, what, basis in ((self.vg, "activity", self.basis), (self.mu_vg, "μ-map", self.mu_basis)):
            check_inside_ring(grid, room, f"{what} (moved by shift={move.tolist()})", basis)
        pose = (float(turn), (float(move[0]), float(move[1]), float(move[2])))
        op = PETProjector(self.vg, geometry, normalisation=self._normalisation, _pose=pose, **self._options())
        if tracked:
            op._track(radius, shift, rotation)
        return op

    def _track(self, radius: Any, shift: Any, rotation: Any) -> None:
        """Rebuild the LORs (and attenuation factors) from Dr.Jit AD arrays (see :meth:`perturbed`)."""
        t = self.types
        f64, v3 = t.Float64, drjit_module(t.backend).Array3f64
        sc, lors = self.pg.scanner, self.pg.lors()
        r_ad = f64(self.pg.scanner.radius) + (0.0 if radius is None else f64(radius) - dr.detach(f64(radius)))
        turn = f64(self._pose[0] if self._pose else 0.0) if rotation is None else f64(rotation)
        if shift is None:
            move = v3(*(self._pose[1] if self._pose else (0.0, 0.0, 0.0)))
        elif isinstance(shift, v3):
            move = shift
        else:  # a flat array of the three components (e.g. from torch)
            flat = f64(shift)
            move = v3(*(dr.gather(f64, flat, t.UInt(k)) for k in range(3)))
        n = sc.crystals_per_ring
        ends = []
        z = sc.positions()[:, 2]
        for crystal in (lors.crystal_a, lors.crystal_b):
            theta = 2.0 * np.pi * (crystal % n) / n + sc.phase
            xyz = (r_ad * f64(np.cos(theta)), r_ad * f64(np.sin(theta)), f64(z[crystal]))
            ends.append(object_frame(xyz, turn, (move.x, move.y, move.z)))
        valid = t.Bool(lors.valid)
        p1, p2 = (
            v3(*(dr.select(valid, c, f64(np.ascontiguousarray(v))) for c, v in zip(q, fixed.T, strict=True)))
            for q, fixed in zip(ends, self._lines, strict=True)
        )
        self._lines = (p1, p2)
        self._rays = Projector(
            self.vg, rays(p1, p2 - p1), self.basis, t.dtype, t.backend, deterministic=self.deterministic
        )
        self._mu_rays = None
        self._weight = self._base_weight if self._mu is None else self._attenuated(self._mu)

    # -- the operator ---------------------------------------------------------------------------------------------
    def _launch(self) -> Any:
        flag = get_deterministic() if self.deterministic is None else self.deterministic
        return launches(self.backend, flag)

    def _attenuated(self, mu: Any) -> Any:
        """The member weights with the attenuation factors ``exp(-∫ μ)`` of the μ-map tensor ``mu`` (Dr.Jit AD
        reaches ``mu`` through the CT projector on the LORs)."""
        if tuple(mu.shape) != self.mu_vg.shape:
            raise ValueError(f"mu (attenuation map) must have shape {self.mu_vg.shape}, got {tuple(mu.shape)}")
        require_finite_tensor(mu, "mu (attenuation map)")
        low = float(dr.min(dr.detach(mu.array), axis=None)[0])
        if low < 0:
            raise ValueError(f"mu (attenuation map) must be >= 0 (1/mm), got a minimum of {low:g}")
        if self._mu_rays is None:
            check_inside_ring(self.mu_vg, self.pg.scanner.radius, "μ-map", self.mu_basis)
            p1, p2 = self._lines
            t = self.types
            self._mu_rays = Projector(self.mu_vg, rays(p1, p2 - p1), self.mu_basis, t.dtype, t.backend)
        return self._base_weight * dr.exp(-self._mu_rays.forward_tensor(mu).array)

    def _compress(self, values: Any, weight: Any = None) -> Any:
        """Per bin: ``Σ_m w_m v_m`` over its members."""
        values = values * (self._weight if weight is None else weight)
        return values if self.group == 1 else dr.block_sum(values, self.group)

    def _expand(self, y: Any) -> Any:
        """The transpose of :meth:`_compress`: each bin's value times ``w_m`` at every member."""
        t = self.types
        if self.group == 1:
            return y * self._weight
        return dr.gather(t.Float, y, dr.arange(t.UInt, dr.width(self._weight)) // self.group) * self._weight

    def _tof_bytes(self) -> int:
        """What a TOF call allocates: about three values per LOR and TOF output, and a volume."""
        engine, item = self._tof, self.types.itemsize
        assert engine is not None
        return (3 * engine.count * engine.outputs + 2 * self.vg.size) * item

    def forward_tensor(self, x: Any, mu: Any = None) -> Any:
        """``A x`` for a Dr.Jit tensor of shape ``vg.shape`` (differentiable w.r.t. ``x``, both modes). Pass ``mu``
        (a Dr.Jit tensor on ``mu_vg``, e.g. with gradients enabled) to use that μ-map instead of the operator's:
        ``A x`` is then differentiable w.r.t. it too (joint activity/attenuation estimation)."""
        if tuple(x.shape) != self.domain_shape:
            raise ValueError(f"x (activity) must have shape {self.domain_shape}, got {tuple(x.shape)}")
        require_finite_tensor(x, "x (activity)")
        t = self.types
        weight = None if mu is None else self._attenuated(mu)
        if self._rays is not None:
            out = self._compress(self._rays.forward_tensor(x).array, weight)
            return t.Tensor(out, self.range_shape)
        engine = self._tof
        assert engine is not None
        require_memory(self._tof_bytes(), f"A of {self!r}")
        with self._launch():
            if dr.grad_enabled(x.array):
                per_bin = dr.custom(TofOp, engine, x.array)
            else:
                per_bin = engine.project(x.array)
            if engine.outputs == 1:
                out = self._compress(per_bin[0], weight)
            else:
                bins = dr.width(self._weight) // self.group
                out = dr.zeros(t.Float, bins * engine.outputs)
                base = dr.arange(t.UInt, bins) * engine.outputs
                for b, v in enumerate(per_bin):
                    dr.scatter(out, self._compress(v, weight), base + b)
            y = t.Tensor(out, self.range_shape)
            dr.eval(y)
        return y

    def adjoint_tensor(self, y: Any) -> Any:
        """``A.T y`` for a Dr.Jit tensor of shape ``range_shape`` (differentiable w.r.t. ``y``, both modes)."""
        if tuple(y.shape) != self.range_shape:
            raise ValueError(f"y (PET data) must have shape {self.range_shape}, got {tuple(y.shape)}")
        require_finite_tensor(y, "y (PET data)")
        t = self.types
        if self._rays is not None:
            return self._rays.adjoint_tensor(t.Tensor(self._expand(y.array), self._rays.range_shape))
        engine = self._tof
        assert engine is not None
        require_memory(self._tof_bytes(), f"A.T of {self!r}")
        with self._launch():
            if engine.outputs == 1:
                per_bin = [self._expand(y.array)]
            else:
                bins = dr.width(self._weight) // self.group
                base = dr.arange(t.UInt, bins) * engine.outputs
                per_bin = [self._expand(dr.gather(t.Float, y.array, base + b)) for b in range(engine.outputs)]
            if any(dr.grad_enabled(v) for v in per_bin):
                out = dr.custom(TofAdjointOp, engine, per_bin)
            else:
                out = dr.zeros(t.Float, self.vg.size)
                engine.backproject(per_bin, out)
            x = t.Tensor(out, self.domain_shape)
            dr.eval(x)
        return x

    def __repr__(self) -> str:
        tof = "" if self.tof is None else f", TOF {self.tof.bins} bins of {self.tof.bin_width:g} mm"
        return (
            f"PETProjector(vg shape={self.vg.shape}, {self.pg!r}{tof}, mu={'yes' if self._mu is not None else 'none'}, "
            f"dtype={self.dtype!r}, backend={self.backend!r})"
        )


class ListmodePETProjector(PETProjector):
    """:class:`PETProjector` of listmode events (``PETProjector(vg, ct.pet.listmode(...))`` makes one): its EM
    sensitivity is the sum over every LOR of the scanner, not over the events.

    Example:
        >>> import numpy as np, drct as ct
        >>> sc = ct.pet.scanner(rings=2, crystals_per_ring=16, radius=40.0)
        >>> vg = ct.VolumeGeometry((2, 8, 8), voxel_size=4.0)
        >>> A = ct.pet.PETProjector(vg, ct.pet.listmode(sc, [0, 1], [8, 9]))
        >>> type(A).__name__, A(np.ones(vg.shape, np.float32)).shape  # one value per event
        ('ListmodePETProjector', (2,))
    """

    def full_sensitivity(self) -> Any:
        """``Σ_i A_iᵀ`` over every LOR of the scanner (an image; computed once from the full span-1 non-TOF
        sinogram with the operator's μ-map unless given)."""
        if self._sensitivity is None:
            full = sinogram(self.pg.scanner)
            op = PETProjector(self.vg, full, **dict(self._options(), tof=None))
            self._sensitivity = op.adjoint_tensor(self.types.Tensor(dr.ones(self.types.Float, op.shape[0]), full.shape))
        return self._sensitivity

    def sensitivity_tensor(self) -> Any:
        """What ``ct.recon.mlem`` / ``osem`` use instead of ``A.T 1``: :meth:`full_sensitivity` times this event
        subset's share of the events (1 for the whole list)."""
        tensor, _ = to_tensor(self.full_sensitivity(), self.domain_shape, self.types, "sensitivity")
        return tensor * self._fraction


class TofAdjointOp(dr.CustomOp):
    """``Aᵀ y`` of the TOF engine for Dr.Jit AD (linear in ``y``)."""

    def eval(self, engine: TofEngine, values: list[Any]) -> Any:
        self.engine = engine
        out = dr.zeros(engine.t.Float, engine.grid.size)
        engine.backproject(values, out)
        return out

    def forward(self) -> None:
        out = dr.zeros(self.engine.t.Float, self.engine.grid.size)
        grad: list[Any] = self.grad_in("values")  # type: ignore[assignment]
        self.engine.backproject(grad, out)
        self.set_grad_out(out)

    def backward(self) -> None:
        self.set_grad_in("values", self.engine.project(self.grad_out()))

    def name(self) -> str:
        return "drct.pet.tof.A.T"


def attenuation_factors(vg: VolumeGeometry, mu: Any, geometry: PETGeometry, basis: str = "voxel") -> np.ndarray:
    """``exp(-∫ μ)`` along the LORs of ``geometry`` (shape ``geometry.shape``; a bin of several LORs gets their
    mean), through the CT projector on the LORs as a ray list.

    Example:
        >>> import numpy as np, drct as ct
        >>> sc = ct.pet.scanner(rings=1, crystals_per_ring=16, radius=60.0)
        >>> vg = ct.VolumeGeometry((1, 20, 20), voxel_size=4.0)
        >>> af = ct.pet.attenuation_factors(vg, np.full(vg.shape, 0.0096), ct.pet.sinogram(sc))
        >>> af.shape, bool(af.min() > 0 and af.max() <= 1)
        ((8, 1, 15), True)
    """
    check_inside_ring(vg, geometry.scanner.radius, "μ-map", basis)
    t = types("float64", get_backend())
    lors = geometry.lors()
    p1, p2 = lor_endpoints(geometry, lors)
    tensor, _ = to_tensor(np.asarray(mu, dtype=np.float64), vg.shape, t, "mu (attenuation map)")
    factors = np.exp(-np.asarray(line_integrals(vg, tensor.array, p1, p2, basis, t))).reshape(-1, lors.group)
    valid = lors.valid.reshape(-1, lors.group)
    return ((factors * valid).sum(axis=1) / valid.sum(axis=1)).reshape(geometry.shape)
