"""``traverse(scene)``: the differentiable parameters of a scene by flat key, readable and settable, in the
manner of Mitsuba's ``mi.traverse``.

Keys: ``geometry.<name>`` for every misalignment parameter that applies to the geometry (see
:mod:`drct.geometry.perturb`; nominal values 0, ``pixel_scale`` 1), ``object.<object name>.<param>`` for the
objects' parameters (``mu`` or ``density``, ``center``, ``axes``, ``radius``, ``data``), ``source.photons``.
Set a value to a Dr.Jit array with gradients enabled and :meth:`Scene.line_integrals` is differentiable w.r.t.
it.

Example:
    >>> import drjit as dr, drct as ct
    >>> scene = ct.load_scene("scenes/shepp_logan_2d.toml", scale=0.1)
    >>> params = ct.scene.traverse(scene)
    >>> mu = dr.llvm.ad.Float64(float(params["object.phantom.mu"]))
    >>> dr.enable_grad(mu)
    >>> params["object.phantom.mu"] = mu
    >>> loss = dr.sum(scene.line_integrals().array)
    >>> dr.backward(loss)
    >>> bool(dr.grad(mu)[0] > 0)
    True
"""

from __future__ import annotations

from .parameters import SceneParameters
from .scene import Scene


def traverse(scene: Scene) -> SceneParameters:
    """The parameters of ``scene`` by flat key (see the module docstring).

    Example:
        >>> import drct as ct
        >>> params = ct.scene.traverse(ct.load_scene("shepp_logan_2d", scale=0.25))
        >>> round(float(params["object.phantom.mu"]), 4), "geometry.det_shift_u" in params
        (0.02, True)
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"traverse needs a drct Scene (ct.load_scene(...)), got {type(scene).__name__}")
    return SceneParameters(scene)
