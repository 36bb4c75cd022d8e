"""``drct generate SCENE --samples N --vary PATTERN=DIST ... -o DATASET``: a simulated training set.

Simulates ``N`` variations of a scene file — each ``--vary`` draws one or more parameters per sample, e.g.
``'object.*.mu=uniform(0.01,0.03)'`` (grammar: :mod:`drct.datasets.vary`) — and writes them into one HDF5 file,
``DATASET/dataset.h5`` (phantom, projections, clean line integrals, geometry vectors, noise seeds, the drawn
values; layout: :mod:`drct.datasets.store`), beside a copy of the scene. ``--workers K`` runs the samples as Ray
tasks on a local cluster of K CPUs, or on the running cluster at ``--address`` (``ray start --head``); ``--workers
0`` (the default) runs them in this process. Same ``--seed``, same bytes, whatever the workers. A task whose
worker dies is retried (``--retries``). The folder appears as a whole at the end, and replaces an existing one
only with ``--force``. Read it back with :class:`drct.datasets.SimulatedDataset`.

Example:
    >>> import os, tempfile
    >>> from drct.cli import main
    >>> out = os.path.join(tempfile.mkdtemp(), "data")
    >>> main(["generate", "scenes/shepp_logan_2d.toml", "--samples", "2", "--scale", "0.1",
    ...       "--vary", "object.*.mu=uniform(0.01,0.03)", "--no-progress", "-o", out])
    0
    >>> main(["generate", "scenes/shepp_logan_2d.toml", "--samples", "2", "--no-progress", "-o", out])
    2
"""

from __future__ import annotations

import argparse
import sys

from ._flags import add_output, add_progress, add_seed, add_threads
from .simulate import check_size, parse_overrides


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "generate",
        help="simulate a dataset of scene variations (serially or on Ray)",
        description="Simulate N random variations of a TOML scene into one HDF5 dataset (phantom, projections, "
        "geometry, seeds, drawn values); --workers K runs them on Ray.",
    )
    parser.add_argument("scene", help="the scene file (.toml)")
    add_output(parser, "the dataset folder")
    parser.add_argument("--samples", type=int, required=True, help="number of samples")
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="PATTERN=DIST",
        help="a parameter key of the scene (wildcards * and ? within a dotted part) and uniform(LOW,HIGH), "
        "normal(MEAN,STD) or choice(V1,V2,...), in the scene's units (mm, 1/mm, rad); repeatable",
    )
    add_seed(parser, "master seed (sample i: SeedSequence(seed).spawn's i-th)")
    parser.add_argument("--workers", type=int, default=0, help="Ray tasks at a time (0: no Ray, this process)")
    parser.add_argument("--address", default=None, help="a running Ray cluster ('auto' or HOST:PORT)")
    parser.add_argument("--retries", type=int, default=3, help="retries of a task whose worker died (default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="reduce views/pixels/voxels by this factor, in (0, 1]")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a scene key (TOML value)"
    )
    parser.add_argument("--no-phantom", action="store_true", help="no phantom (scenes of volumes or meshes)")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    parser.add_argument("--allow-outside-files", action="store_true", help="read files outside the scene's folder")
    add_threads(parser)
    add_progress(parser, old=("--quiet",))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..datasets import GenerationError, Recipe, generate

    recipe = Recipe.from_file(
        args.scene,
        args.vary,
        args.seed,
        args.scale,
        parse_overrides(args.set),
        args.allow_outside_files,
        phantom=not args.no_phantom,
    )
    check_size(recipe.load())
    try:
        out = generate(
            recipe,
            args.samples,
            args.output,
            args.workers,
            args.address,
            args.retries,
            args.force,
            not args.no_progress,
        )
    except GenerationError as err:
        print(f"drct generate: error: {err}", file=sys.stderr)
        return 2
    if not args.no_progress:
        print(f"{args.samples} samples written to {out}/", file=sys.stderr)
    return 0
