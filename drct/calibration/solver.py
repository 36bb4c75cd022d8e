"""Joint reconstruction and geometry calibration: alternate a regularised least-squares reconstruction of the
volume with geometry steps (:mod:`drct.calibration.steps`), coarse to fine, keeping off the gauge
(:mod:`drct.calibration.gauge`). A Ctrl-C anywhere in an outer iteration or in the final reconstruction returns the
best state reached, with ``interrupted=True`` (:mod:`drct.calibration.interrupts`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import require_finite
from ..geometry.projection import ProjectionGeometry, RayGeometry
from ..geometry.volume import VolumeGeometry
from ..projector import Projector
from .diagnostics import act, analyse
from .gauge import Gauge, first_level_gauge, spec_label
from .interrupts import deferred_interrupts, is_interrupt
from .levels import Level, build_levels, default_factors, default_strides, upsample
from .misfit import apply_check, check_weighting
from .model import GeometryModel, PerturbModel
from .options import CalibrationOptions
from .pose import in_scanner_frame
from .problem import LevelProblem, ridge_cgls
from .projectors import with_projector_option
from .result import CalibrationResult
from .steps import StepStrategy, make_strategy, uncertainty

POLISH = 0.25  # take the analysis's remaining Gauss–Newton step when it exceeds this many σ (fitted level only)


@dataclass
class State:
    """What a callback sees after every outer iteration: the current loss, and the best state of this level
    (``theta``, ``params`` as :meth:`~drct.ProjectionGeometry.perturb` takes them, and the geometry they give).

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> pg = ct.parallel(np.linspace(0, np.pi, 24, endpoint=False), 24)
        >>> y = ct.Projector(vg, pg.perturb(det_shift_u=0.5), basis="bspline2")(ct.phantoms.shepp_logan(vg))
        >>> seen = []
        >>> res = ct.calibrate(y, pg, ["det_shift_u"], vg=vg, levels=[1], iterations=2, progress=False,
        ...                    diagnostics="off", callback=seen.append)
        >>> [(s.level, s.iteration) for s in seen], sorted(seen[-1].params)
        ([(0, 0), (0, 1)], ['det_shift_u'])
    """

    level: int
    factor: int
    iteration: int
    loss: float
    theta: np.ndarray
    params: dict[str, Any]
    geometry: Any


@with_projector_option
def calibrate(
    projections: Any,
    pg_nominal: ProjectionGeometry | RayGeometry,
    params: list[str] | None = None,
    basis: str = "bspline2",
    vg: VolumeGeometry | None = None,
    levels: list[int] | None = None,
    optimizer: str = "lm",
    iterations: int | list[int] = 8,
    recon_iterations: int = 20,
    initial_recon_iterations: int = 30,
    final_recon_iterations: int = 10,
    regularization: float = 1e-5,
    lowpass: float = 2.0,
    init: dict[str, Any] | None = None,
    fix: list[str] | None = None,
    gauge: str = "fix",
    gauge_tol: float = 1e-4,
    view_strides: list[int] | None = None,
    adam_steps: int = 5,
    adam_lr: float = 0.2,
    tol: float = 1e-3,
    fine_tol: float = 5e-3,
    accelerate: bool = True,
    pose: bool = True,
    model: GeometryModel | None = None,
    callback: Callable[[State], Any] | None = None,
    progress: bool = True,
    diagnostics: str = "warn",
    diagnostic_iterations: int = 20,
    identifiability_tol: float = 1e-2,
    diagnostic_size: int = 48**3,
    model_check: bool = True,
    *,
    projector: Callable[..., Projector] | None = None,
) -> CalibrationResult:
    """Estimate misalignment parameters and the volume together from projections.

    Each level (coarse to fine) reconstructs the volume on a coarser grid from binned projections, then
    alternates geometry steps (Levenberg–Marquardt on forward-mode Jacobians, or Adam on reverse-mode gradients)
    with a few warm-started CGLS iterations of ``|A x - y|^2 + λ|x|^2`` on the volume.

    Gauge handling: at the first level, the parameters' Jacobian columns are compared with those of a rigid
    motion of the object (which the reconstruction absorbs exactly). Combinations whose normalised eigenvalue is
    below ``gauge_tol`` cannot be told apart: the parameter of such a pair listed last in ``params`` is fixed
    (``gauge="fix"``; combinations of per-view parameters have their steps projected off), or they are only
    reported (``gauge="report"``), or not checked (``"off"``).

    Args:
        projections: measured projections, shaped ``pg_nominal.shape`` (numpy or torch).
        pg_nominal: the nominal geometry the parameters perturb (or a :class:`RayGeometry` with ``model``).
        params: names from :data:`drct.geometry.perturb.PARAMETERS`; ``"name:view"`` for one value per view.
        basis: volume model (``"bspline2"`` gives the smoothest landscape; ``"voxel"`` is fastest).
        vg: volume grid (default: a cube covering the detector's field of view at the isocentre).
        levels: coarsening factors, coarse to fine, e.g. ``[4, 2, 1]`` (default from ``vg``'s size).
        optimizer: ``"lm"`` (Levenberg–Marquardt) or ``"adam"``.
        iterations: outer iterations per level (one number or one per level).
        recon_iterations: CGLS iterations per outer iteration (warm-started).
        initial_recon_iterations: CGLS iterations at the start of every level.
        final_recon_iterations: CGLS iterations of the returned reconstruction (unweighted data, every view,
            calibrated geometry), started from the finest level's volume (fitted to low-passed data; moved into
            the scanner's frame by the estimated pose): its own iterations add the detail.
        regularization: λ relative to an upper bound of ``|A^T A|``.
        lowpass: σ in pixels of the finest detector of a Gaussian blur applied to both the data and the model's
            projections while calibrating (``|L (A x - y)|^2``; divided by the level's binning factor; 0 turns
            it off). Edges sharper than the volume basis can reproduce otherwise pull the geometry: in
            ``examples/calibration/cone_beam.py --size 48 --views 90`` (analytic data) the errors in
            ``det_shift_v`` / ``det_roll`` are 2.7 px / 1.5° with σ = 0 and 0.16 px / 0.27° with σ = 2. On data
            made by the model itself there is nothing to suppress, and on detectors of a few dozen pixels σ = 2
            removes much of the signal: use 0 there. The returned reconstruction fits the unweighted data.
        init: starting parameter values (default nominal).
        fix: parameters held at their starting values.
        gauge: ``"fix"``, ``"report"`` or ``"off"``.
        gauge_tol: eigenvalue threshold of the gauge test (relative to the largest).
        view_strides: use every k-th view per level (default: the level factor, down to 30 views, and every 2nd
            view at the finest level after a coarser one when 90 or more are left; 1 when any parameter is per
            view; see :func:`drct.calibration.levels.default_strides`). A stride above 1 at the finest level
            halves its passes (e.g. ``[4, 2, 2]``), but the returned reconstruction always uses every view;
            ``[4, 2, 1]`` refines on every view.
        adam_steps, adam_lr: Adam steps per outer iteration and step length in units of one pixel's effect.
        tol: stop a level when no parameter moves more than ``tol`` (in units of one pixel's effect).
        fine_tol: the same for the levels after the first (they start from the coarser level's estimate, and a
            step of 0.005 pixel's effect is far below what the data determine).
        accelerate: try a quasi-Newton step on the reduced loss (volume re-fitted), with ``J^T J`` corrected by
            BFGS updates for how much the volume's adaptation flattens the loss; kept only when the re-fitted
            loss drops (LM otherwise).
        pose: estimate a rigid motion of the object alongside (the joint problem's gauge), so that steps can
            follow directions the volume could otherwise only follow slowly (e.g. ``det_shift_v`` against a
            vertical object shift in circular cone beam); it is reported (``result.pose``) and the returned
            reconstruction is made in the scanner's frame.
        model: a custom geometry model instead of ``params`` (e.g. :class:`drct.calibration.EndpointModel`; any
            object satisfying :class:`drct.calibration.model.GeometryModel`).
        callback: called with a :class:`State` after every outer iteration; raising KeyboardInterrupt there (or
            pressing Ctrl-C) stops early and returns the best result so far with ``interrupted=True``.
        progress: show a tqdm progress bar.
        diagnostics: what to do when the identifiability and model-error diagnostics
            (:mod:`drct.calibration.diagnostics`) find a parameter the data do not determine or a fit that did not
            converge: ``"warn"`` (a :class:`~drct.calibration.diagnostics.CalibrationWarning`), ``"raise"``
            (:class:`~drct.calibration.diagnostics.UndeterminedParameterError` naming it, carrying the result), or
            ``"off"`` (no analysis; ``std`` is then the fixed-volume Gauss–Newton one, a lower bound).
        diagnostic_iterations: CGLS iterations of the volume's imitation of each Jacobian column.
        identifiability_tol: a parameter is undetermined when less than this fraction of its signal is its own
            (the rest imitated by the volume, the pose and the other parameters).
        diagnostic_size: the analysis runs at the finest level with at most this many volume coefficients (the
            coarsest level if none): its σ is then that level's, larger than the finest level's would be.
        projector: what builds every projector of the calibration, ``projector(vg, pg, basis=...)`` (default
            :class:`drct.Projector`); e.g. :class:`drct.distributed.WholeScanProjector` under ``torchrun``: each
            rank passes the whole projections, marches its share of the rays and gets the same result.
        model_check: also test whether a second detector low-pass (twice ``lowpass``, or 2 pixels) moves the
            estimate (:mod:`drct.calibration.misfit`): σ gains the model-error term that shows, and a parameter
            it moves beyond its noise is not determined. Costs about as much again as the analysis. (It does not
            see everything: on the issue's cone-beam case at 32³ it moved the wrong roll by 0.7–1.5σ only; the
            bound on what the misfit beyond the noise can do, always computed, is what flags that case.)

    Returns:
        A :class:`CalibrationResult`.

    Raises:
        ValueError: (or TypeError) naming the option, its value and what is expected, for any bad option (checked
            by :class:`~drct.calibration.CalibrationOptions` before anything runs).
        NonFiniteError: for NaN/Inf data.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((24, 24, 24))
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 40, endpoint=False), (24, 24), 2.0, 60.0, 120.0)
        >>> x = ct.phantoms.shepp_logan(vg)
        >>> y = ct.Projector(vg, pg.perturb(det_shift_u=1.0), basis="bspline2")(x)
        >>> res = ct.calibrate(y, pg, ["det_shift_u"], vg=vg, levels=[1], iterations=4, progress=False)
        >>> abs(res.params["det_shift_u"] - 1.0) < 0.05
        True
    """
    start = time.perf_counter()
    options = CalibrationOptions(
        basis=basis,
        levels=levels,
        optimizer=optimizer,
        iterations=iterations,
        recon_iterations=recon_iterations,
        initial_recon_iterations=initial_recon_iterations,
        final_recon_iterations=final_recon_iterations,
        regularization=regularization,
        lowpass=lowpass,
        gauge=gauge,
        gauge_tol=gauge_tol,
        view_strides=view_strides,
        adam_steps=adam_steps,
        adam_lr=adam_lr,
        tol=tol,
        fine_tol=fine_tol,
        accelerate=accelerate,
        pose=pose,
        progress=progress,
        diagnostics=diagnostics,
        diagnostic_iterations=diagnostic_iterations,
        identifiability_tol=identifiability_tol,
        diagnostic_size=diagnostic_size,
        model_check=model_check,
    )
    run = _Run.prepare(projections, pg_nominal, params, vg, init, fix, model, options, callback)
    bar = tqdm(total=sum(run.outer), desc="calibrate", disable=not options.progress, leave=False)
    try:
        run.execute(bar)
    except BaseException as err:  # Ctrl-C, or an error raised because of one (e.g. inside a Dr.Jit loop)
        if not is_interrupt(err):
            raise
        run.result.interrupted = True
    finally:
        with deferred_interrupts():
            bar.close()
    with deferred_interrupts() as late:  # assemble the result without being cut short
        run.result.runtime = time.perf_counter() - start
        out = run.result.finish(run.model)
    out.interrupted = out.interrupted or late.pending
    if not out.interrupted:
        act(out.diagnostics, options.diagnostics, out)
    return out


@dataclass
class _Run:
    """One calibration: the checked inputs and the state carried across levels and outer iterations.

    ``result`` always holds the best complete state (``theta``, and a volume ``x`` on ``vg_x`` fitted to it), so
    that an interrupt at any point leaves something consistent to return.
    """

    model: GeometryModel
    options: CalibrationOptions
    levels: Callable[[], list[Level]]  # built inside the run, so that Ctrl-C while binning is caught too
    outer: list[int]
    fixed: list[int]  # theta indices held fixed by request
    strategy: StepStrategy
    result: CalibrationResult
    callback: Callable[[State], Any] | None
    gauge: Gauge | None = None
    built: list[Level] | None = None  # the levels, once built
    every_view: Callable[[], Level] | None = None  # the finest level with every view (when it takes a subset)

    @classmethod
    def prepare(
        cls,
        projections: Any,
        pg: ProjectionGeometry | RayGeometry,
        params: list[str] | None,
        vg: VolumeGeometry | None,
        init: dict[str, Any] | None,
        fix: list[str] | None,
        model: GeometryModel | None,
        options: CalibrationOptions,
        callback: Callable[[State], Any] | None,
    ) -> _Run:
        y = np.asarray(projections.detach().cpu().numpy() if hasattr(projections, "detach") else projections)
        if tuple(y.shape) != tuple(pg.shape):
            raise ValueError(f"projections must have the geometry's shape {pg.shape}, got {tuple(y.shape)}")
        require_finite(y, "projections")
        if model is None:
            if not isinstance(pg, ProjectionGeometry):
                raise TypeError("a ray-list geometry needs a model (e.g. drct.calibration.EndpointModel)")
            model = PerturbModel(pg, list(params or []), init, pose=options.pose)
        elif params:
            raise ValueError("give either params or model, not both")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable (it is given a State), got {type(callback).__name__}")
        vg = _default_volume(pg) if vg is None else vg
        factors = default_factors(vg) if options.levels is None else list(options.levels)
        strides = options.view_strides
        per_view = any(s.per_view for s in model.specs)
        if strides is None:
            strides = default_strides(factors, pg.num_views if isinstance(pg, ProjectionGeometry) else 1, per_view)
        elif per_view and any(s != 1 for s in strides):
            raise ValueError("per-view parameters need every view at every level: view_strides must be all 1")
        if len(strides) != len(factors):
            raise ValueError(f"view_strides needs one entry per level ({len(factors)}), got {strides}")
        names = [s.name for s in model.specs]
        if bad := sorted(set(fix or []) - set(names)):
            raise ValueError(f"fix names parameter(s) {bad} that are not in params {names}")
        fixed = [i for i in range(model.size) if spec_label(model, i) in set(fix or [])]
        result = CalibrationResult.start(model, vg, options.basis, options.optimizer, factors)
        result.theta = model.theta0.copy()
        strategy = make_strategy(
            options.optimizer, options.accelerate, options.recon_iterations, options.adam_steps, options.adam_lr
        )
        y32 = y.astype(np.float32)

        def levels() -> list[Level]:
            return build_levels(vg, pg, y32, factors, list(strides))

        def every_view() -> Level:  # the finest grid with every view, for the returned reconstruction
            return build_levels(vg, pg, y32, [factors[-1]], [1])[0]

        run = cls(model, options, levels, options.per_level(factors), fixed, strategy, result, callback)
        if isinstance(pg, ProjectionGeometry) and strides[-1] > 1:
            run.every_view = every_view
        return run

    def execute(self, bar: Any) -> None:
        """All levels, then the uncertainties and the final reconstruction; ``result`` is kept current."""
        prob: LevelProblem | None = None
        levels = self.built = self.levels()
        x = np.zeros(levels[0].vg.shape, np.float32)
        free = np.arange(self.model.size)
        for li, level in enumerate(levels):
            prob = LevelProblem(
                level,
                self.model.with_geometry(level.pg),
                self.options.basis,
                self.options.regularization,
                self.options.lowpass,
            )
            x, free = self._level(li, prob, x, bar)
        assert prob is not None  # the last level's problem
        self._final(prob, x, free)

    def _level(self, li: int, prob: LevelProblem, x: np.ndarray, bar: Any) -> tuple[np.ndarray, np.ndarray]:
        """One level: fit the volume, test the gauge (first level), then the outer iterations; returns the best
        volume and the free theta indices."""
        o, r, level = self.options, self.result, prob.level
        theta = r.theta.copy()
        x = upsample(x, level.vg.shape)
        if r.x is None:  # nothing complete yet: let the result hold the first fit's latest iterate
            buffer = np.zeros(level.vg.shape, np.float32)
            r.x, r.vg_x = buffer, level.vg
            x = ridge_cgls(prob.operator(theta), prob.y, x, o.initial_recon_iterations, prob.ridge, out=buffer)
        else:
            x = ridge_cgls(prob.operator(theta), prob.y, x, o.initial_recon_iterations, prob.ridge)
        loss = prob.loss(theta, x)
        if li == 0 and o.gauge != "off":
            self.gauge = first_level_gauge(prob, self.model, theta, x, o.gauge, o.gauge_tol, self.fixed)
            r.gauge = self.gauge.report
        fixed_now = sorted(set(self.fixed) | set(self.gauge.fixed if self.gauge else []))
        free = np.array([i for i in range(self.model.size) if i not in fixed_now], dtype=np.int64)
        r.fixed = sorted({spec_label(self.model, i) for i in fixed_now})
        r.x, r.vg_x, r.theta = x, level.vg, theta.copy()
        r.record(li, level.factor, loss, theta)
        best = loss
        self.strategy.start_level(self.model.size)
        for it in range(self.outer[li]):
            if free.size == 0:
                break
            before = theta
            step = self.strategy.step(prob, theta, x, loss, free, self.gauge)
            theta, x, loss = step.theta, step.x, step.loss
            if step.refit:
                start = -prob.residual(theta, x)  # known from the step's own loss: no forward projection
                x = ridge_cgls(prob.operator(theta), prob.y, x, o.recon_iterations, prob.ridge, residual=start)
                loss = prob.loss(theta, x)
            r.record(li, level.factor, loss, theta)
            if loss <= best:
                best = loss
                r.x, r.vg_x, r.theta = x, level.vg, theta.copy()
            bar.update(1)
            bar.set_postfix(level=level.factor, loss=f"{loss:.3e}")
            if self.callback is not None:
                good = r.theta.copy()
                geometry = self.model.final_geometry(good)
                self.callback(State(li, level.factor, it, loss, good, self.model.public(good), geometry))
            limit = o.tol if li == 0 else max(o.tol, o.fine_tol)  # the coarse level got close: less to refine
            if np.max(np.abs(theta - before) / self.model.scale) < limit:
                bar.update(self.outer[li] - it - 1)
                break
        return r.x, free

    def _final(self, prob: LevelProblem, x: np.ndarray, free: np.ndarray) -> None:
        """Uncertainties at the best state, then a fresh reconstruction on the unweighted data in the scanner's
        frame; ``result`` keeps the best level's volume until that reconstruction is complete."""
        r = self.result
        theta = r.theta.copy()
        r.std = uncertainty(prob, theta, x, free, self.gauge, self.strategy.hessian)
        if self.options.diagnostics != "off":
            theta = self._diagnose(prob, theta, x, free)
        motion = self.model.pose(theta)
        start = x
        if motion is not None:  # the pose is a gauge: report it, reconstruct in the scanner's frame
            r.pose = {"shift": motion[0].tolist(), "rotation": motion[1].tolist()}
            start = in_scanner_frame(x, prob.level.vg, motion)  # before theta's pose (motion's view) is zeroed
            theta[self.model.user_size :] = 0.0
        # From the finest level's volume (fitted to low-passed data, moved into the scanner's frame): at 128³ x 360
        # in the cone-beam example, 10 iterations from it reached 28.44 dB PSNR (27.64 dB for 20 from zero before).
        plain = self._every_view(prob)
        x = ridge_cgls(plain.operator(theta), plain.y, start, self.options.final_recon_iterations, plain.ridge)
        final_loss = plain.loss(theta, x)
        with deferred_interrupts():  # the volume and its geometry change together
            r.x, r.vg_x, r.theta, r.final_loss = x, prob.level.vg, theta, final_loss

    def _every_view(self, prob: LevelProblem) -> LevelProblem:
        """The unweighted problem on every view of ``prob``'s grid when ``prob`` took a subset of them (else
        ``prob.unweighted()``). Its ridge is ``prob``'s scaled by the ratio of the view counts (the bound of
        ``|AᵀA|`` is a sum over the views, and the subsets are evenly spaced): no pass to measure it afresh."""
        if self.every_view is None:
            return prob.unweighted()
        level = self.every_view()
        o = self.options
        ridge = prob.ridge * level.y.shape[0] / prob.level.y.shape[0]
        return LevelProblem(level, self.model.with_geometry(level.pg), o.basis, o.regularization, 0.0, ridge=ridge)

    def _diagnose(self, prob: LevelProblem, theta: np.ndarray, x: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Identifiability and model-error diagnostics (:mod:`drct.calibration.diagnostics`) at the finest level
        small enough (``diagnostic_size``); their σ replaces the fixed-volume one of the entries they analyse.

        When the analysis ran on the fitted (finest) level and finds a Gauss–Newton step of the re-fitted loss
        still to take (more than ``POLISH``σ), that step is taken (the pose and the volume following) and kept if
        the loss drops, and the analysis is made again there: the alternating fit creeps along directions the
        volume can imitate, and its stopping point varied by about 1σ between runs of the same data. On a coarser
        level the step points at *that* level's minimum, which its coarser discretisation moves: taking it cost
        the 128³ cone-beam example 10× its roll error (0.02° → 0.21°), so there it is only reported, and no
        parameter is called unconverged for it. Returns the final theta."""
        o, r = self.options, self.result
        levels = self.built or [prob.level]
        small = [lv for lv in levels if lv.vg.size <= o.diagnostic_size]
        level = small[-1] if small else levels[0]
        fitted = level is prob.level
        if not fitted:
            prob = LevelProblem(level, self.model.with_geometry(level.pg), o.basis, o.regularization, o.lowpass)
            zero = np.zeros(level.vg.shape, np.float32)
            x = ridge_cgls(prob.operator(theta), prob.y, zero, o.initial_recon_iterations, prob.ridge)
        fits = o.initial_recon_iterations  # a fresh fit, or the last level's warm-started ones (capped: cost)
        if level is prob.level:
            fits = o.initial_recon_iterations + o.recon_iterations * max(r.levels.count(level.factor) - 1, 0)
        fits = min(fits, 2 * max(o.initial_recon_iterations, o.recon_iterations))
        found = analyse(prob, theta, x, free, self.gauge, o.diagnostic_iterations, o.identifiability_tol, fits)
        if found is not None and not fitted:
            found.fitted_level, found.unconverged = False, []
        if found is not None and fitted and np.any(found.pending > POLISH):
            moved = theta + found.theta_step
            start = (x + found.volume_step.astype(np.float32)).astype(np.float32)
            refit = ridge_cgls(prob.operator(moved), prob.y, start, o.recon_iterations, prob.ridge)
            if prob.loss(moved, refit) < prob.loss(theta, x):
                theta, x = moved, refit
                found = analyse(prob, theta, x, free, self.gauge, o.diagnostic_iterations, o.identifiability_tol, fits)
        if found is not None and o.model_check:
            check = check_weighting(
                prob, theta, x, free, self.gauge, found, o.lowpass, o.recon_iterations, o.diagnostic_iterations
            )
            if check is not None:
                apply_check(found, check)
        if found is not None:
            std = np.zeros(theta.size) if r.std is None else np.asarray(r.std, dtype=np.float64).copy()
            std[found.index] = found.std
            r.std = std
        r.diagnostics = found
        return theta


def _default_volume(pg: Any) -> VolumeGeometry:
    """A cube covering the field of view: detector width at the isocentre, one voxel per binned pixel."""
    if isinstance(pg, RayGeometry):
        raise ValueError("vg is required for a ray-list geometry")
    cols = pg.det_shape[-1]
    pixel = float(np.mean(np.linalg.norm(np.asarray(pg.det_u), axis=1)))
    mag = 1.0
    if pg.beam == "cone":
        src, det = np.asarray(pg.src), np.asarray(pg.det)
        mag = float(np.mean(np.linalg.norm(det - src, axis=1) / np.linalg.norm(src, axis=1)))
    size = pixel / mag
    shape = (cols, cols) if pg.ndim == 2 else (pg.det_shape[0], cols, cols)
    return VolumeGeometry(shape, voxel_size=size)
