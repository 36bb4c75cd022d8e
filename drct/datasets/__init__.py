"""Simulated datasets: many variations of a scene, generated serially or on Ray, read back for training.

* :func:`generate` (``drct generate`` on the command line) simulates ``N`` samples of a scene with random
  parameter values (:mod:`drct.datasets.vary`) into one HDF5 file (:mod:`drct.datasets.store`), in this process or
  on a Ray cluster (``pip install 'drct[ray]'``), with the same bytes either way;
* :class:`SimulatedDataset` reads it back as a ``torch.utils.data.Dataset``.

Example:
    >>> import tempfile, os
    >>> from drct.datasets import Recipe, SimulatedDataset, generate
    >>> recipe = Recipe.from_file("scenes/shepp_logan_2d.toml", ["object.*.mu=uniform(0.01,0.03)"], seed=1, scale=0.1)
    >>> data = SimulatedDataset(generate(recipe, 2, os.path.join(tempfile.mkdtemp(), "data")))
    >>> len(data), tuple(data[1]["projections"].shape)
    (2, (36, 32))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .generate import GenerationError as GenerationError
from .generate import generate as generate
from .sample import Recipe as Recipe
from .sample import simulate_sample as simulate_sample
from .vary import Variations as Variations

if TYPE_CHECKING:
    from .reader import SimulatedDataset as SimulatedDataset

__all__ = ["GenerationError", "Recipe", "SimulatedDataset", "Variations", "generate", "simulate_sample"]


def __getattr__(name: str) -> Any:
    if name == "SimulatedDataset":  # imports torch: only when asked for
        from .reader import SimulatedDataset

        return SimulatedDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
