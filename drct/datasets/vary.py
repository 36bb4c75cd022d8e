"""The ``--vary`` grammar: random per-sample values of a scene's parameters.

One variation is ``PATTERN=DISTRIBUTION``:

* ``PATTERN`` is a parameter key of :func:`drct.scene.traverse` (``object.phantom.mu``, ``geometry.det_shift_u``,
  ``source.photons``, ``detector.gain``, ...) in which ``*`` stands for any characters *within one dotted part*
  (``object.*.mu`` matches ``object.phantom.mu`` but not ``object.a.b.mu``) and ``?`` for one character. It must
  match at least one key of the scene.
* ``DISTRIBUTION`` is one of ``uniform(LOW, HIGH)`` (``LOW < HIGH``), ``normal(MEAN, STD)`` (``STD >= 0``) or
  ``choice(V1, V2, ...)`` (equally likely values), with finite decimal numbers as arguments.

Values are in the scene's internal units (mm, 1/mm, radians, g/cm³, photons), as ``traverse`` shows them. A
parameter holding several numbers (a centre, a per-view misalignment) gets one independent draw per number.
An integer parameter accepts only integer draws. Two variations may not match the same key, and a parameter of
more than :data:`MAX_NUMBERS` numbers (a volume's ``data``) cannot be varied.

Draws are reproducible: :meth:`Variations.draw` takes a ``numpy.random.Generator`` and draws the matched keys
in order (variations in the order given, keys in the order ``traverse`` lists them), each value in full.

Example:
    >>> import numpy as np, drct as ct
    >>> from drct.datasets.vary import Variations
    >>> scene = ct.load_scene("scenes/shepp_logan_2d.toml", scale=0.1)
    >>> v = Variations.parse(["object.*.mu=uniform(0.01, 0.03)", "geometry.det_shift_u=choice(-1, 0, 1)"], scene)
    >>> v.keys
    ['object.phantom.mu', 'geometry.det_shift_u']
    >>> values = v.draw(scene, np.random.default_rng(0))
    >>> 0.01 <= values["object.phantom.mu"] < 0.03, values["geometry.det_shift_u"] in (-1.0, 0.0, 1.0)
    (True, True)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import require_finite
from ..scene import Scene, traverse
from ..scene.objects import plain

MAX_NUMBERS = 1024  # independent draws per parameter (a per-view misalignment has one per view; a volume is refused)
DISTRIBUTIONS = {"uniform": 2, "normal": 2, "choice": None}  # name -> number of arguments (None: one or more)
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_SPEC = re.compile(r"^\s*([A-Za-z0-9_.*?\[\]-]+)\s*=\s*([a-z]+)\s*\((.*)\)\s*$")
_PART = re.compile(r"^[A-Za-z0-9_*?-]+$")


@dataclass(frozen=True)
class Distribution:
    """One distribution: ``name`` in :data:`DISTRIBUTIONS` and its numeric ``args``."""

    name: str
    args: tuple[float, ...]

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """``shape`` independent float64 draws."""
        if self.name == "uniform":
            return rng.uniform(self.args[0], self.args[1], shape)
        if self.name == "normal":
            return rng.normal(self.args[0], self.args[1], shape)
        return np.asarray(self.args, dtype=np.float64)[rng.integers(0, len(self.args), shape)]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{a:g}' for a in self.args)})"


@dataclass(frozen=True)
class Variation:
    """One ``PATTERN=DISTRIBUTION`` item (see the module docstring)."""

    pattern: str
    distribution: Distribution

    @classmethod
    def parse(cls, text: str) -> Variation:
        """Parse one item; ValueError naming the item and what was expected.

        Example:
            >>> Variation.parse("object.*.mu = normal(0.02, 1e-3)")
            Variation(pattern='object.*.mu', distribution=Distribution(name='normal', args=(0.02, 0.001)))
        """
        m = _SPEC.match(text)
        if m is None:
            raise ValueError(
                f"--vary {text!r}: expected PATTERN=DISTRIBUTION, e.g. 'object.*.mu=uniform(0.01,0.03)' "
                f"(distributions: {', '.join(f'{d}(...)' for d in DISTRIBUTIONS)})"
            )
        pattern, name, inner = m.group(1), m.group(2), m.group(3)
        if not all(_PART.match(part) for part in pattern.split(".")):
            raise ValueError(
                f"--vary {text!r}: the pattern {pattern!r} must be dotted parts of letters, digits, _, -, * and ?"
            )
        if name not in DISTRIBUTIONS:
            raise ValueError(f"--vary {text!r}: unknown distribution {name!r}; expected one of {sorted(DISTRIBUTIONS)}")
        items = [a.strip() for a in inner.split(",")] if inner.strip() else []
        args = []
        for item in items:
            if not re.fullmatch(_NUMBER, item):
                raise ValueError(f"--vary {text!r}: {name} takes finite decimal numbers, got {item!r}")
            value = float(item)
            if not math.isfinite(value):  # 1e999 parses as inf
                raise ValueError(f"--vary {text!r}: {item!r} is not a finite number")
            args.append(value)
        wanted = DISTRIBUTIONS[name]
        if wanted is None and not args:
            raise ValueError(f"--vary {text!r}: choice needs at least one value")
        if wanted is not None and len(args) != wanted:
            raise ValueError(f"--vary {text!r}: {name} takes {wanted} numbers, got {len(args)}")
        if name == "uniform" and not (args[0] < args[1] and math.isfinite(args[1] - args[0])):
            raise ValueError(
                f"--vary {text!r}: uniform(LOW, HIGH) needs LOW < HIGH (and a finite HIGH - LOW), "
                f"got {args[0]:g} and {args[1]:g}"
            )
        if name == "normal" and args[1] < 0:
            raise ValueError(f"--vary {text!r}: normal(MEAN, STD) needs STD >= 0, got {args[1]:g}")
        return cls(pattern, Distribution(name, tuple(args)))

    def matches(self, key: str) -> bool:
        """Whether ``key`` matches the pattern (``*`` and ``?`` never cross a dot)."""
        parts, keys = self.pattern.split("."), key.split(".")
        return len(parts) == len(keys) and all(_glob(p).fullmatch(k) for p, k in zip(parts, keys, strict=True))

    def __str__(self) -> str:
        return f"{self.pattern}={self.distribution}"


def _glob(part: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in part))


@dataclass(frozen=True)
class Variations:
    """Parsed variations resolved against a scene: ``items`` pairs each matched key with its variation.

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.datasets import Variations
        >>> scene = ct.load_scene("shepp_logan_2d", scale=0.1)
        >>> variations = Variations.parse(["object.*.mu=uniform(0.01,0.03)"], scene)
        >>> variations.keys
        ['object.phantom.mu']
        >>> mu = variations.draw(scene, np.random.default_rng(0))["object.phantom.mu"]
        >>> 0.01 <= mu <= 0.03
        True
    """

    items: tuple[tuple[str, Variation], ...]

    @classmethod
    def parse(cls, texts: Sequence[str], scene: Scene) -> Variations:
        """Parse ``texts`` and match them against the keys of ``scene``; ValueError for a pattern matching nothing
        or a key matched twice."""
        params = traverse(scene)
        keys = list(params)
        items: list[tuple[str, Variation]] = []
        owner: dict[str, str] = {}
        for text in texts:
            variation = Variation.parse(text)
            matched = [k for k in keys if variation.matches(k)]
            if not matched:
                raise ValueError(
                    f"--vary {text!r}: the pattern {variation.pattern!r} matches no parameter of scene "
                    f"{scene.name!r}; it has {', '.join(keys)}"
                )
            for key in matched:
                size = int(np.size(plain(params[key])))
                if size > MAX_NUMBERS:
                    raise ValueError(
                        f"--vary {text!r}: {key} holds {size} numbers (a volume?); a variation draws at most "
                        f"{MAX_NUMBERS} independent values: narrow the pattern"
                    )
                if key in owner:
                    raise ValueError(f"--vary: parameter {key!r} is matched by both {owner[key]!r} and {text!r}")
                owner[key] = text
                items.append((key, variation))
        return cls(tuple(items))

    @property
    def keys(self) -> list[str]:
        """The varied parameter keys, in drawing order."""
        return [k for k, _ in self.items]

    def draw(self, scene: Scene, rng: np.random.Generator) -> dict[str, Any]:
        """One value per key (the shape of the scene's current value; ints for integer parameters)."""
        params = traverse(scene)
        out: dict[str, Any] = {}
        for key, variation in self.items:
            current = np.asarray(plain(params[key]))
            value = variation.distribution.sample(rng, current.shape)
            require_finite(value, f"--vary {variation}: the values drawn for {key}")  # normal(0, 1e308) overflows
            if np.issubdtype(current.dtype, np.integer):
                if not np.all(value == np.round(value)):
                    raise ValueError(f"--vary {variation}: {key} is an integer parameter, drew {value.tolist()}")
                value = value.astype(current.dtype)
            out[key] = value.item() if value.ndim == 0 else value
        return out

    def columns(self, scene: Scene) -> list[str]:
        """Names of the flat parameter columns: ``key`` for a single number, ``key[i]`` for each of several."""
        params = traverse(scene)
        names: list[str] = []
        for key in self.keys:
            size = int(np.size(plain(params[key])))
            names.extend([key] if size == 1 else [f"{key}[{i}]" for i in range(size)])
        return names

    def flatten(self, values: dict[str, Any]) -> np.ndarray:
        """The drawn values as one float64 row, in :meth:`columns` order."""
        parts = [np.asarray(values[k], dtype=np.float64).reshape(-1) for k in self.keys]
        return np.concatenate(parts) if parts else np.zeros(0)
