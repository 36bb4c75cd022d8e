"""Make the pictures of the example pages: run each example in a small setting and keep the PNGs it writes.

Each example runs once, in a fresh temporary folder, with the arguments of :data:`SETTINGS` (its ``--quick``
setting where it has one, else small sizes); the PNGs it writes are shrunk (:func:`shrink`: 640 pixels wide, 64
colours) into ``docs/pictures/<example>/``, where
``docs/hooks.py`` shows them on the example's page with the command that made them. The examples are not run by
CI or by the site's build: run this by hand after changing an example, and commit the pictures only while all of
them together stay small (:data:`BUDGET`; the script says when they do not).

Usage::

    python docs/gen_pictures.py                   # every example of SETTINGS
    python docs/gen_pictures.py quickstart torch/learned_fbp_filter

Example:
    >>> SETTINGS["quickstart"]
    ['--size', '64']
    >>> command("quickstart", Path("out"))[1:]
    ['examples/quickstart.py', '--size', '64', '-o', 'out', '--force']
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PICTURES = ROOT / "docs" / "pictures"
BUDGET = 300_000  # bytes of PNGs worth keeping in the repository, all examples together
WIDTH, COLOURS = 640, 64  # pictures are shrunk to at most this width and palette (about 20-30 kB each)

# example (path under examples/, without .py) -> its arguments besides the output folder: small, seconds to minutes
SETTINGS: dict[str, list[str]] = {
    "quickstart": ["--size", "64"],
    "loss_landscape": ["--size", "48", "--points", "21", "--iterations", "10"],
    "torch/learned_fbp_filter": ["--size", "32", "--views", "45", "--train", "16", "--test", "4", "--epochs", "3"],
    "torch/geometry_calibration": ["--size", "48", "--views", "45", "--iterations", "15"],
    "learned/fdk_weights": ["--quick"],
    "learned/filter_learning": ["--quick"],
    "learned/primal_dual": ["--quick"],
    "learned/end_to_end": ["--quick"],
    "emission/unrolled_em": ["--quick", "--no-progress"],
    "calibration/cone_beam": ["--size", "32", "--views", "60", "--iterations", "3,2"],
}


def command(key: str, out: Path) -> list[str]:
    """The command that makes ``key``'s pictures into ``out``."""
    return [sys.executable, f"examples/{key}.py", *SETTINGS[key], "-o", str(out), "--force"]


def shown_command(key: str) -> str:
    """The command as the example's page shows it (``python examples/... -o OUT``)."""
    return " ".join(["python", f"examples/{key}.py", *SETTINGS[key], "-o", "OUT"])


def shrink(source: Path, target: Path) -> Path:
    """``source`` at most :data:`WIDTH` pixels wide, in a palette of :data:`COLOURS` colours, saved as ``target``."""
    from PIL import Image  # matplotlib's dependency

    with Image.open(source) as image:
        rgb = image.convert("RGB")
    if rgb.width > WIDTH:
        rgb = rgb.resize((WIDTH, round(rgb.height * WIDTH / rgb.width)), Image.Resampling.LANCZOS)
    rgb.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT).save(target, "PNG", optimize=True)
    return target


def make(key: str) -> list[Path]:
    """Run one example into a temporary folder and copy its PNGs to ``docs/pictures/<key>/``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's drct, not an installed one
        subprocess.run(command(key, out), cwd=ROOT, env=env, check=True)
        print(f"{key}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        found = sorted(out.rglob("*.png"))
        target = PICTURES / key
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        kept = []
        for png in found:
            name = "_".join(png.relative_to(out).parts)  # calibration writes <basis>/report.png
            kept.append(shrink(png, target / name))
        return kept


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("examples", nargs="*", default=list(SETTINGS), help="examples to run (default: all)")
    args = p.parse_args()
    unknown = [k for k in args.examples if k not in SETTINGS]
    if unknown:
        p.error(f"no setting for {unknown}; known: {', '.join(SETTINGS)}")
    failed = []
    for key in args.examples:
        try:
            made = make(key)
        except subprocess.CalledProcessError:  # e.g. an optional package missing: its output says which
            failed.append(key)
            continue
        for png in made:
            print(f"  {png.relative_to(ROOT)}  {png.stat().st_size / 1e3:.0f} kB")
    total = sum(p.stat().st_size for p in PICTURES.rglob("*.png"))
    verdict = "small enough to commit" if total <= BUDGET else f"over the {BUDGET / 1e3:.0f} kB budget: do not commit"
    print(f"docs/pictures/: {total / 1e3:.0f} kB of PNGs, {verdict}")
    if failed:
        sys.exit(f"failed (see their output above): {', '.join(failed)}")


if __name__ == "__main__":
    main()
