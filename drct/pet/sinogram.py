"""PET data layouts: sinograms (with span and view mashing) and listmode, both as lists of crystal pairs.

**Transaxial bins.** For a ring of ``N`` crystals, view ``v`` (``0 <= v < N/2``) and radial index ``d``
(``1 <= d <= N-1``) name the crystal pair ``i = ((σ - d) / 2) mod N``, ``j = (i + d) mod N`` with
``σ = 2v + (d mod 2)``: the LOR from ``i`` to ``j`` has its normal at angle ``πσ/N`` and the signed distance
``R cos(πd/N)`` from the axis, so each unordered pair of the ring appears exactly once (``N/2 · (N-1)`` bins; the two
interleaved angles ``2v`` and ``2v + 1`` share a view, as usual). ``radial_bins`` keeps the central ``d``.
View mashing ``m`` sums ``m`` neighbouring views.

**Axial bins (Michelogram).** LOR ``i → j`` between ring ``ra`` (of ``i``) and ring ``rb`` (of ``j``) has ring
difference ``δ = rb - ra`` and axial position ``ra + rb`` (half rings). With span ``S`` (odd), segment ``0`` holds
``|δ| <= (S-1)/2`` and segment ``±g`` holds ``δ`` within ``(S-1)/2`` of ``±g·S``, up to ``max_ring_difference``; a
plane is one (segment, axial position) and sums its ring pairs. Planes are ordered by segment (``0, +1, -1, +2,
...``), then axial position. Span 1 keeps every ring pair apart.

A sinogram bin is the **sum** of the counts of its member LORs, and its model is the sum of their models (nothing
is approximated by a mean LOR). Sinograms are shaped ``(views, planes, radial)`` — views first, so that ordered
subsets of ``ct.recon.osem`` are subsets of views — plus a last axis of TOF bins with time of flight.

Example:
    >>> import drct as ct
    >>> sc = ct.pet.scanner(rings=4, crystals_per_ring=16, radius=60.0)
    >>> ct.pet.sinogram(sc).shape, ct.pet.sinogram(sc, span=3, max_ring_difference=2, mash=2).shape
    ((8, 16, 15), (4, 11, 15))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .scanner import Scanner


@dataclass(frozen=True)
class Lors:
    """The member LORs of a layout, grouped ``group`` per bin (bin ``k`` owns members ``k·group .. k·group +
    group - 1``; padding members have ``valid`` False and stand for nothing). ``crystal_a → crystal_b`` is each
    LOR's orientation (the direction of its TOF axis). ``tof_bin`` holds one TOF bin per member (listmode with
    time of flight) or is None."""

    crystal_a: np.ndarray
    crystal_b: np.ndarray
    valid: np.ndarray
    group: int
    tof_bin: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.crystal_a.size)


def segment_ranges(span: int, max_ring_difference: int) -> list[tuple[int, int, int]]:
    """``(segment, δ_min, δ_max)`` in sinogram order ``0, +1, -1, +2, -2, ...``.

    Example:
        >>> segment_ranges(3, 4)
        [(0, -1, 1), (1, 2, 4), (-1, -4, -2)]
    """
    half = (span - 1) // 2
    out = [(0, -min(half, max_ring_difference), min(half, max_ring_difference))]
    g = 1
    while g * span - half <= max_ring_difference:
        lo, hi = g * span - half, min(g * span + half, max_ring_difference)
        out += [(g, lo, hi), (-g, -hi, -lo)]
        g += 1
    return out


def _planes(rings: int, span: int, max_ring_difference: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per plane the ``(pairs, 2)`` ring pairs ``(ra, rb)`` it sums, and the ``(rings, rings)`` plane of each ring
    pair (-1: not in the sinogram)."""
    ra, rb = np.meshgrid(np.arange(rings), np.arange(rings), indexing="ij")
    plane_of = np.full((rings, rings), -1, dtype=np.int64)
    planes: list[np.ndarray] = []
    for _, lo, hi in segment_ranges(span, max_ring_difference):
        delta = rb - ra
        inside = (delta >= lo) & (delta <= hi)
        for position in np.unique((ra + rb)[inside]):
            members = inside & (ra + rb == position)
            plane_of[members] = len(planes)
            planes.append(np.stack([ra[members], rb[members]], axis=1))
    return planes, plane_of


@dataclass(frozen=True, eq=False)
class SinogramGeometry:
    """A sinogram layout of a :class:`~drct.pet.scanner.Scanner` (see the module docstring); build it with
    :func:`sinogram`. ``views`` are the (mashed) views it holds, in order (all of them, or an ordered subset).

    Example:
        >>> import drct as ct
        >>> g = ct.pet.sinogram(ct.pet.scanner(rings=2, crystals_per_ring=16, radius=40.0))  # a SinogramGeometry
        >>> g.shape, g.span, g.radial_bins  # (views, planes, radial bins)
        ((8, 4, 15), 1, 15)
    """

    scanner: Scanner
    span: int
    max_ring_difference: int
    mash: int
    radial_bins: int
    views: np.ndarray
    _planes: list[np.ndarray] = field(repr=False)
    _plane_of: np.ndarray = field(repr=False)

    @property
    def num_views(self) -> int:
        return int(self.views.size)

    @property
    def num_planes(self) -> int:
        return len(self._planes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(views, planes, radial)``."""
        return (self.num_views, self.num_planes, self.radial_bins)

    @property
    def first_radial(self) -> int:
        """The radial index ``d`` of radial bin 0."""
        return self.scanner.crystals_per_ring // 2 - (self.radial_bins - 1) // 2

    @property
    def full_views(self) -> int:
        """Mashed views of the whole sinogram."""
        return self.scanner.crystals_per_ring // 2 // self.mash

    def ring_pairs(self, plane: int) -> np.ndarray:
        """``(pairs, 2)`` ring pairs ``(ra, rb)`` summed in ``plane``."""
        return self._planes[plane].copy()

    def select_views(self, views: Any) -> SinogramGeometry:
        """The layout of the given views (indices into :attr:`views`), in that order (for ordered subsets)."""
        idx = np.asarray(views, dtype=np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.num_views:
            raise ValueError(f"views must be indices in [0, {self.num_views}), got {views!r}")
        return SinogramGeometry(
            self.scanner,
            self.span,
            self.max_ring_difference,
            self.mash,
            self.radial_bins,
            self.views[idx].copy(),
            self._planes,
            self._plane_of,
        )

    def lors(self) -> Lors:
        """The member LORs of every bin, in sinogram order, padded to the largest bin."""
        n = self.scanner.crystals_per_ring
        group = max(p.shape[0] for p in self._planes) * self.mash
        d = self.first_radial + np.arange(self.radial_bins)
        a = np.zeros((self.num_views, self.num_planes, self.radial_bins, group), dtype=np.int64)
        b = np.zeros_like(a)
        valid = np.zeros(a.shape, dtype=bool)
        raw = self.views[:, None] * self.mash + np.arange(self.mash)[None, :]  # (views, mash) unmashed views
        sigma = 2 * raw[:, :, None] + d[None, None, :] % 2  # (views, mash, radial)
        i = ((sigma - d) // 2) % n
        j = (i + d) % n
        for p, pairs in enumerate(self._planes):
            for k, (ra, rb) in enumerate(pairs):
                slots = k * self.mash + np.arange(self.mash)
                a[:, p, :, slots] = np.moveaxis(ra * n + i, 1, 0)
                b[:, p, :, slots] = np.moveaxis(rb * n + j, 1, 0)
                valid[:, p, :, slots] = True
        return Lors(a.reshape(-1), b.reshape(-1), valid.reshape(-1), group)

    def bin_of(self, crystal_a: Any, crystal_b: Any) -> tuple[np.ndarray, np.ndarray]:
        """The flat bin (index into ``shape``, -1 when the pair is in no bin of this layout) of each crystal pair,
        and whether the pair is stored the other way round (``b → a``: its TOF axis is reversed).

        Example:
            >>> import drct as ct
            >>> g = ct.pet.sinogram(ct.pet.scanner(rings=2, crystals_per_ring=8, radius=40.0))
            >>> lors = g.lors()
            >>> index, flipped = g.bin_of(lors.crystal_b[:3], lors.crystal_a[:3])
            >>> index.tolist(), flipped.tolist()
            ([0, 1, 2], [True, True, True])
        """
        sc = self.scanner
        ra, i = sc.ring_and_crystal(crystal_a)
        rb, j = sc.ring_and_crystal(crystal_b)
        n = sc.crystals_per_ring
        d = (j - i) % n
        sigma = (2 * i + d) % n
        direct = (((sigma - d) // 2) % n == i) & (d > 0)
        # the other orientation, j -> i, is the stored one when the direct one is not
        d = np.where(direct, d, (i - j) % n)
        sigma = np.where(direct, sigma, (2 * j + d) % n)
        first, second = np.where(direct, ra, rb), np.where(direct, rb, ra)
        view = (sigma // 2) // self.mash
        position = np.full(view.shape, -1, dtype=np.int64)
        lookup = np.full(self.full_views, -1, dtype=np.int64)
        lookup[self.views] = np.arange(self.num_views)
        view = lookup[np.clip(view, 0, self.full_views - 1)]
        plane = self._plane_of[first, second]
        radial = d - self.first_radial
        ok = (d > 0) & (view >= 0) & (plane >= 0) & (radial >= 0) & (radial < self.radial_bins)
        flat = (view * self.num_planes + plane) * self.radial_bins + radial
        position[ok] = flat[ok]
        return position, ~direct

    def histogram(self, events: ListmodeGeometry, tof_bins: int | None = None) -> np.ndarray:
        """Counts per bin of listmode ``events`` (of the same scanner): shape :attr:`shape`, or ``(*shape,
        tof_bins)`` with TOF (an event stored the other way round has its TOF bin mirrored). Events in no bin of
        this layout are refused.

        Example:
            >>> import drct as ct
            >>> sc = ct.pet.scanner(rings=1, crystals_per_ring=8, radius=40.0)
            >>> g = ct.pet.sinogram(sc)
            >>> int(g.histogram(ct.pet.listmode(sc, [0, 4, 1], [4, 0, 2])).sum())
            3
        """
        if events.scanner != self.scanner:
            raise ValueError(f"the events are of {events.scanner!r}, this sinogram of {self.scanner!r}")
        index, flipped = self.bin_of(events.crystal_a, events.crystal_b)
        if np.any(index < 0):
            raise ValueError(
                f"{int(np.sum(index < 0))} events lie in no bin of {self!r} (first: {int(np.argmax(index < 0))})"
            )
        size = int(np.prod(self.shape))
        if tof_bins is None:
            return np.bincount(index, minlength=size).reshape(self.shape).astype(np.float64)
        if events.tof_bin is None:
            raise ValueError("tof_bins given, but the events carry no TOF bin")
        k = np.where(flipped, tof_bins - 1 - events.tof_bin, events.tof_bin)
        if np.any((k < 0) | (k >= tof_bins)):
            raise ValueError(f"event TOF bins must lie in [0, {tof_bins})")
        counts = np.bincount(index * tof_bins + k, minlength=size * tof_bins)
        return counts.reshape(*self.shape, tof_bins).astype(np.float64)

    def __repr__(self) -> str:
        return (
            f"SinogramGeometry({self.scanner!r}, span={self.span}, max_ring_difference={self.max_ring_difference}, "
            f"mash={self.mash}, shape={self.shape})"
        )


def sinogram(
    scanner: Scanner,
    span: int = 1,
    max_ring_difference: int | None = None,
    mash: int = 1,
    radial_bins: int | None = None,
) -> SinogramGeometry:
    """A sinogram layout of ``scanner``.

    Args:
        scanner: from :func:`drct.pet.scanner`.
        span: axial compression (odd, >= 1): 1 keeps every ring pair apart.
        max_ring_difference: largest ``|rb - ra|`` kept (default ``rings - 1``: all).
        mash: views summed per stored view (divides ``crystals_per_ring / 2``).
        radial_bins: central radial bins kept (default all ``crystals_per_ring - 1``).

    Example:
        >>> import drct as ct
        >>> sc = ct.pet.scanner(rings=3, crystals_per_ring=32, radius=80.0)
        >>> ct.pet.sinogram(sc, span=3, radial_bins=21).shape
        (16, 7, 21)
    """
    if not isinstance(scanner, Scanner):
        raise TypeError(f"pet.sinogram: scanner must come from drct.pet.scanner(...), got {type(scanner).__name__}")
    n, rings = scanner.crystals_per_ring, scanner.rings

    def integer(value: Any, name: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise ValueError(f"pet.sinogram: {name} must be an integer in [{low}, {high}], got {value!r}")
        return int(value)

    span = integer(span, "span", 1, 2 * rings - 1)
    if span % 2 == 0:
        raise ValueError(f"pet.sinogram: span must be odd, got {span}")
    mrd = integer(
        rings - 1 if max_ring_difference is None else max_ring_difference, "max_ring_difference", 0, rings - 1
    )
    mash = integer(mash, "mash", 1, n // 2)
    if (n // 2) % mash:
        raise ValueError(f"pet.sinogram: mash ({mash}) must divide the {n // 2} views of a ring of {n} crystals")
    radial = integer(n - 1 if radial_bins is None else radial_bins, "radial_bins", 1, n - 1)
    planes, plane_of = _planes(rings, span, mrd)
    return SinogramGeometry(scanner, span, mrd, mash, radial, np.arange(n // 2 // mash), planes, plane_of)


@dataclass(frozen=True, eq=False)
class ListmodeGeometry:
    """Listmode events: one LOR ``crystal_a → crystal_b`` each (and one TOF bin each with time of flight, counted
    along ``a → b``); build it with :func:`listmode`. The operator's range is ``(events,)``.

    Example:
        >>> import drct as ct
        >>> sc = ct.pet.scanner(rings=2, crystals_per_ring=16, radius=40.0)
        >>> events = ct.pet.listmode(sc, [0, 1], [8, 9])  # a ListmodeGeometry of two events
        >>> events.shape, events.num_views
        ((2,), 2)
    """

    scanner: Scanner
    crystal_a: np.ndarray
    crystal_b: np.ndarray
    tof_bin: np.ndarray | None = None

    @property
    def num_views(self) -> int:
        """Events (each is its own "view" for ordered subsets)."""
        return int(self.crystal_a.size)

    @property
    def shape(self) -> tuple[int]:
        return (self.num_views,)

    def select_views(self, views: Any) -> ListmodeGeometry:
        idx = np.asarray(views, dtype=np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.num_views:
            raise ValueError(f"events must be indices in [0, {self.num_views}), got {views!r}")
        tof = None if self.tof_bin is None else self.tof_bin[idx]
        return ListmodeGeometry(self.scanner, self.crystal_a[idx], self.crystal_b[idx], tof)

    def lors(self) -> Lors:
        return Lors(self.crystal_a, self.crystal_b, np.ones(self.num_views, dtype=bool), 1, self.tof_bin)

    def __repr__(self) -> str:
        return (
            f"ListmodeGeometry({self.scanner!r}, {self.num_views} events{', TOF' if self.tof_bin is not None else ''})"
        )


def listmode(scanner: Scanner, crystal_a: Any, crystal_b: Any, tof_bin: Any = None) -> ListmodeGeometry:
    """Listmode events of ``scanner``: the flat crystal indices of both ends of each event's LOR (and its TOF bin).

    Example:
        >>> import drct as ct
        >>> sc = ct.pet.scanner(rings=2, crystals_per_ring=16, radius=60.0)
        >>> ct.pet.listmode(sc, [0, 3], [24, 9]).shape
        (2,)
    """
    if not isinstance(scanner, Scanner):
        raise TypeError(f"pet.listmode: scanner must come from drct.pet.scanner(...), got {type(scanner).__name__}")
    a, b = np.asarray(crystal_a).reshape(-1), np.asarray(crystal_b).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"pet.listmode: crystal_a and crystal_b must hold one entry per event, got {a.shape}, {b.shape}"
        )
    scanner.ring_and_crystal(a)
    scanner.ring_and_crystal(b)
    if np.any(a == b):
        raise ValueError(f"pet.listmode: event {int(np.argmax(a == b))} joins crystal {int(a[a == b][0])} to itself")
    tof = None
    if tof_bin is not None:
        tof = np.asarray(tof_bin).reshape(-1)
        if tof.shape != a.shape or not np.issubdtype(tof.dtype, np.integer):
            raise ValueError(f"pet.listmode: tof_bin must hold one integer per event ({a.size}), got {tof_bin!r}")
        tof = tof.astype(np.int64)
    return ListmodeGeometry(scanner, a.astype(np.int64), b.astype(np.int64), tof)
