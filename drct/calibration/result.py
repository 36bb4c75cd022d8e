"""The outcome of a calibration: estimated geometry and parameters, reconstruction, history, and its files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry.parameters import SYMBOLS, TABLE
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..io import save_tiff, write_json, write_together

ANGLE_NAMES = tuple(p.name for p in TABLE.values() if p.unit == "angle")


def unit_of(name: str) -> str:
    """The unit kind of a calibrated entry: the table's, or ``"length"`` for a model's own (e.g. module shifts)."""
    return TABLE[name].unit if name in TABLE else "length"


FILES = ("geometry.json", "reconstruction.tif", "calibration.json", "report.png")


@dataclass
class CalibrationResult:
    """Estimated geometry, reconstruction and the optimisation's history.

    Attributes:
        geometry: the calibrated projection geometry (numpy vectors).
        nominal: the nominal geometry.
        params: estimated parameter values (mm, radians, scale factor), as :meth:`~drct.ProjectionGeometry.perturb`
            takes them.
        std: one-sigma uncertainties in the same layout, or None where not computed: for the global parameters
            the diagnostics analyse, with the volume (and object pose) re-fitted and the residual's structure
            (:mod:`drct.calibration.diagnostics`); otherwise (per-view entries, ``diagnostics="off"``) the
            Gauss–Newton covariance with the volume held fixed, a lower bound. 0 for fixed parameters.
        reconstruction: the volume coefficients on ``vg``.
        vg: the grid of ``reconstruction`` (the finest level unless interrupted earlier).
        loss: relative data misfit ``|A x - y|^2 / |y|^2`` after every outer iteration.
        levels: the level factor of each loss entry.
        traces: ``(len(loss), parameters)`` flat parameter vector after every outer iteration.
        fixed: parameters held fixed (by request or by gauge handling).
        gauge: one entry per detected gauge direction: involved parameters, eigenvalue, action taken.
        diagnostics: a :class:`~drct.calibration.diagnostics.Diagnostics` (identifiability, undetermined
            parameters, residual structure), or None (``diagnostics="off"``, interrupted, nothing free).
        pose: the rigid object motion estimated alongside (the joint problem's gauge; the returned reconstruction
            is made afresh with the returned geometry, which needs none), or None.
        interrupted: True if stopped early (Ctrl-C or a callback raising KeyboardInterrupt): the fields hold the
            best state reached.
        runtime: seconds.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> pg = ct.parallel(np.linspace(0, np.pi, 24, endpoint=False), 24)
        >>> y = ct.Projector(vg, pg.perturb(det_shift_u=0.5), basis="bspline2")(ct.phantoms.shepp_logan(vg))
        >>> res = ct.calibrate(y, pg, ["det_shift_u"], vg=vg, levels=[1], iterations=3, progress=False,
        ...                    diagnostics="off")
        >>> round(res.params["det_shift_u"], 1), res.iterations, res.reconstruction.shape
        (0.5, 3, (16, 16))
        >>> float(res.trace("det_shift_u")[0])  # the history starts at the nominal value
        0.0
    """

    nominal: Any
    basis: str
    optimizer: str
    factors: list[int]
    labels: list[str]
    pixel: float
    geometry: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    std: Any = None
    reconstruction: Any = None
    vg: VolumeGeometry | None = None
    loss: list[float] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)
    traces: Any = None
    fixed: list[str] = field(default_factory=list)
    gauge: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    runtime: float = 0.0
    final_loss: float | None = None
    pose: dict[str, Any] | None = None
    diagnostics: Any = None
    theta: Any = None
    x: Any = None
    vg_x: Any = None
    _trace_rows: list[np.ndarray] = field(default_factory=list, repr=False)
    _public: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, model: Any, vg: VolumeGeometry, basis: str, optimizer: str, factors: list[int]) -> CalibrationResult:
        return cls(
            nominal=model.nominal_geometry(),
            basis=basis,
            optimizer=optimizer,
            factors=list(factors),
            labels=[s.label for s in model.specs],
            pixel=float(model.pixel),
            vg=vg,
        )

    def record(self, level: int, factor: int, loss: float, theta: np.ndarray) -> None:
        self.loss.append(float(loss))
        self.levels.append(int(factor))
        self._trace_rows.append(np.array(theta, dtype=np.float64))

    def finish(self, model: Any) -> CalibrationResult:
        theta = model.theta0 if self.theta is None else self.theta
        self.theta = theta
        self.geometry = model.final_geometry(theta)
        self.params = model.public(theta)
        self.std = None if self.std is None else model.public(np.asarray(self.std))
        self.reconstruction = self.x
        self.vg = self.vg_x if self.vg_x is not None else self.vg
        self.traces = np.array(self._trace_rows) if self._trace_rows else np.zeros((0, theta.size))
        self._public = model.public
        self.x = self.vg_x = None
        return self

    @property
    def iterations(self) -> int:
        """Outer iterations run (all levels)."""
        return max(len(self.loss) - len(set(self.levels)), 0)

    def trace(self, name: str) -> np.ndarray:
        """History of one parameter: ``(len(loss),)`` for a scalar, ``(len(loss), ...)`` otherwise."""
        rows = [self._public(t)[name] for t in self.traces]
        return np.asarray(rows, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the volume, JSON-ready: each parameter's value, std, unit and trace (one entry per
        ``loss`` entry), lengths also in detector pixels and angles in degrees."""
        out: dict[str, Any] = {"parameters": {}}
        for name, value in self.params.items():
            entry: dict[str, Any] = {"value": value, "std": None if self.std is None else self.std[name]}
            unit = unit_of(name)
            entry["unit"] = SYMBOLS[unit]
            if unit == "angle":
                entry["value_deg"] = np.rad2deg(np.asarray(value)).tolist()
            elif unit == "length":
                entry["value_px"] = (np.asarray(value) / self.pixel).tolist()
            entry["fixed"] = name in self.fixed
            entry["trace"] = self.trace(name).tolist()  # after every outer iteration, in the unit of "value"
            out["parameters"][name] = entry
        out.update(
            basis=self.basis,
            optimizer=self.optimizer,
            levels=self.factors,
            detector_pixel_mm=self.pixel,
            fixed=self.fixed,
            gauge=self.gauge,
            loss=self.loss,
            loss_levels=self.levels,
            final_loss=self.final_loss,
            object_pose=self.pose,
            iterations=self.iterations,
            interrupted=self.interrupted,
            runtime_s=self.runtime,
            volume_shape=None if self.vg is None else list(self.vg.shape),
            diagnostics=None if self.diagnostics is None else self.diagnostics.to_dict(),
            uncertainty_note=(
                "1-sigma with the volume and the object pose re-fitted, the residual's autocovariance as the noise "
                "model, the fitted volume's own noise taken off the information and, where a second detector "
                "low-pass moves the estimate, a model-error term (see diagnostics; bias_bound there bounds what "
                "the misfit beyond the noise could do)"
                if self.diagnostics is not None
                else "1-sigma from sigma^2 (J^T J)^-1 at the final geometry, volume held fixed: a lower bound "
                "(ignores the volume's adaptation and the model's mismatch)"
            ),
        )
        return out

    def save(self, out: str | Path, overwrite: bool = False, before: np.ndarray | None = None) -> dict[str, Path]:
        """Write ``geometry.json``, ``reconstruction.tif``, ``calibration.json`` and ``report.png`` into ``out``,
        as one set (:func:`drct.io.write_together`: never files of two runs side by side; an error while writing
        leaves the old set untouched).

        Args:
            out: output folder (created).
            overwrite: replace existing files (otherwise FileExistsError naming them).
            before: an uncalibrated reconstruction to show beside the calibrated one in the report.

        Returns:
            ``{file kind: path}``.
        """
        folder = Path(out)
        paths = {name.split(".")[0]: folder / name for name in FILES}
        if isinstance(self.geometry, ProjectionGeometry):
            from ..geometry.files import save_geometry

            geometry, vg = self.geometry, self.vg

            def write_geometry(tmp: str) -> None:
                save_geometry(tmp, geometry, vg, overwrite=True)
        else:
            rays = {
                "format": "drct-rays",
                "origins": np.asarray(self.geometry.origins).tolist(),
                "directions": np.asarray(self.geometry.directions).tolist(),
            }

            def write_geometry(tmp: str) -> None:
                write_json(tmp, rays)

        from .report import write_report

        summary = self.to_dict()
        writers: dict[Path, Callable[[str], object] | None] = {
            paths["calibration"]: lambda tmp: write_json(tmp, summary),  # the primary: its state is the set's
            paths["geometry"]: write_geometry,
            paths["report"]: lambda tmp: write_report(self, tmp, before),
        }
        writers[paths["reconstruction"]] = None  # none: no stale one of another run stays beside these files
        if self.reconstruction is not None:
            rec = np.asarray(self.reconstruction, dtype=np.float32)
            writers[paths["reconstruction"]] = lambda tmp: save_tiff(tmp, rec)
        write_together(writers, overwrite=overwrite)
        return paths
