"""The PNG report of a calibration: loss curve, parameter traces, central slices before/after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_atomically


def _central(volume: np.ndarray) -> np.ndarray:
    v = np.asarray(volume)
    return v[v.shape[0] // 2] if v.ndim == 3 else v


def _display(name: str, values: np.ndarray, pixel: float) -> tuple[np.ndarray, str]:
    from .result import unit_of

    unit = unit_of(name)
    if unit == "angle":
        return np.rad2deg(values), "°"
    if unit == "scale":
        return values, ""
    return values / pixel, "px"


def write_report(result: Any, path: str | Path, before: np.ndarray | None = None) -> Path:
    """Write the report figure of ``result`` (a :class:`~drct.calibration.CalibrationResult`) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 + (result.reconstruction is not None) + (before is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.2))
    ax = axes[0]
    loss = np.asarray(result.loss)
    levels = np.asarray(result.levels)
    for factor in dict.fromkeys(result.levels):
        idx = np.flatnonzero(levels == factor)
        ax.semilogy(idx, loss[idx], "o-", ms=3, label=f"level 1/{factor}")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("|A x - y|² / |y|²")
    ax.set_title("loss" + (" (interrupted)" if result.interrupted else ""))
    if result.levels:  # none when interrupted before the first fit completed
        ax.legend(fontsize=8)
    ax = axes[1]
    for name in result.params:
        trace = result.trace(name)
        shown, unit = _display(name, trace, result.pixel)
        if shown.ndim == 1:
            ax.plot(shown, label=f"{name} ({unit})")
        else:  # per view or vector: RMS over entries of the deviation from the first iterate
            flat = shown.reshape(shown.shape[0], -1)
            ax.plot(np.sqrt(np.mean((flat - flat[:1]) ** 2, axis=1)), "--", label=f"{name} RMS change ({unit})")
    ax.set_xlabel("outer iteration")
    ax.set_title("parameters")
    ax.legend(fontsize=7)
    k = 2
    images = ([("before (nominal geometry)", before)] if before is not None else []) + (
        [("calibrated", result.reconstruction)] if result.reconstruction is not None else []
    )
    lo = min(float(np.percentile(_central(v), 1)) for _, v in images) if images else 0.0
    hi = max(float(np.percentile(_central(v), 99.5)) for _, v in images) if images else 1.0
    for title, volume in images:
        axes[k].imshow(_central(volume), cmap="gray", vmin=lo, vmax=hi)
        axes[k].set_title(f"{title}, central slice")
        axes[k].axis("off")
        k += 1
    fig.tight_layout()
    target = Path(path)
    write_atomically(target, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
    return target
