#!/usr/bin/env bash
# The wheel check of issue 19: drct installed from its wheel (not the checkout) into a fresh venv.
#
#   tools/check_wheel.sh [WORK]      (WORK: an empty or new folder; default a new temporary one, kept)
#
# 1. builds the wheel from the checkout's tracked files (copied to WORK/src: the checkout gets no build/ or
#    egg-info) with `pip wheel --no-deps`;
# 2. makes a fresh venv, installs the wheel, lists what got installed and fails if any torch, triton, nvidia-*
#    or CUDA package is among it; prints the venv's size (du -sh);
# 3. from an empty folder: `drct --version`, `python -m drct --version`, `drct simulate shepp_logan_2d`,
#    `drct reconstruct` of its projections and `drct calibrate` of the bundled micro_ct_misaligned scene
#    (reduced with --scale and few iterations to keep it short), checking that the scene comes from the
#    installed package, not the checkout;
# 4. checks that `drct reconstruct -o dicom/` without pydicom stops in one line naming drct[formats], installs
#    "<wheel>[formats]" and writes and reads back a DICOM series;
# 5. installs torch==2.13.0 (this machine's local CPU wheel: pip.conf's find-links; any other torch spec would
#    pull CUDA packages, so never) and then "<wheel>[torch]", checks again for CUDA packages and imports
#    drct.torch; prints the venv's size again.
#
# Each step prints its wall time. Not run by CI (it builds a venv of a few hundred MB and needs the package
# index); run it by hand before a release: `nice tools/check_wheel.sh`.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-$(mktemp -d -t drct-wheel-XXXXXX)}
python=${PYTHON:-python3}
mkdir -p "$work"
if [ -n "$(ls -A "$work")" ]; then
    echo "check_wheel: $work is not empty: give a new or empty folder" >&2
    exit 2
fi
work=$(cd "$work" && pwd)
echo "check_wheel: working in $work (load: $(uptime | sed 's/.*load average: //'))"

now() { date +%s.%N; }
step_start=0
step() { step_start=$(now); echo; echo "== $*"; }
done_step() { awk -v a="$step_start" -v b="$(now)" 'BEGIN { printf "   (%.1f s)\n", b - a }'; }
fail() { echo "check_wheel: FAILED: $*" >&2; exit 1; }
cuda_packages() {  # torch/CUDA packages in the venv, one a line (none: no output)
    "$work/venv/bin/python" -m pip list --format=freeze 2>/dev/null \
        | grep -iE '^(torch|triton|nvidia-[^=]*|cuda[^=]*|jax[^=]*)==' || true
}

step "build the wheel from the tracked files"
mkdir -p "$work/src" "$work/dist"
git -C "$repo" ls-files -z | (cd "$repo" && tar --null -T - -cf -) | tar -C "$work/src" -xf -
"$python" -m pip wheel --quiet --no-deps "$work/src" -w "$work/dist"
wheel=$(ls "$work"/dist/drct-*.whl)
echo "   $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"
listing=$("$python" -m zipfile -l "$wheel")
grep -q 'drct/scenes/shepp_logan_2d.toml' <<<"$listing" || fail "the wheel has no bundled scenes"
grep -q 'drct/py.typed' <<<"$listing" || fail "the wheel has no py.typed"
done_step

step "a fresh venv with the wheel"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
echo "   installed:"
"$work/venv/bin/python" -m pip list --format=freeze | sed 's/^/     /'
found=$(cuda_packages)
[ -z "$found" ] || fail "pip install drct brought torch/CUDA packages: $found"
echo "   no torch, no CUDA packages; venv size: $(du -sh "$work/venv" | cut -f1)"
done_step

step "the commands from an empty folder"
mkdir "$work/run"
cd "$work/run"
export PATH="$work/venv/bin:$PATH" MPLBACKEND=Agg
drct --version
python -m drct --version
where=$(python -c 'import drct; print(drct.__file__)')
case "$where" in
    "$work"/venv/*) echo "   drct from $where" ;;
    *) fail "drct was imported from $where, not from the venv" ;;
esac
scene=$(python -c 'import drct; print(drct.scenes.path("micro_ct_misaligned"))')
case "$scene" in
    "$work"/venv/*) ;;
    *) fail "the bundled scene is $scene, not inside the installed package" ;;
esac
done_step
step "drct simulate shepp_logan_2d"
drct simulate shepp_logan_2d -o sim --no-progress
ls sim
done_step
step "drct reconstruct (FBP of the simulated scan)"
drct reconstruct sim/line_integrals.npy --geometry sim/geometry.json --method fbp --no-progress -o recon/fbp.tif
ls recon
done_step
step "drct calibrate micro_ct_misaligned (reduced: --scale 0.25, one level, 2 iterations)"
drct calibrate micro_ct_misaligned --scale 0.25 --levels 1 --iterations 2 --recon-iterations 3 --final-recon-iterations 3 \
    --no-progress -o calibration
ls calibration
done_step

step "the [formats] extra: without it DICOM output is refused in one line; with it, drct reconstruct -o dicom/"
cd "$work/run"
set +e
message=$(drct reconstruct sim/line_integrals.npy --geometry sim/geometry.json --no-progress -o dicom/ 2>&1)
status=$?
set -e
[ "$status" = 2 ] && grep -q 'drct\[formats\]' <<<"$message" || fail "no pydicom: expected exit 2 naming drct[formats], got $status: $message"
echo "   without pydicom: $message"
python -m pip install --quiet --disable-pip-version-check "$wheel[formats]"
drct reconstruct sim/line_integrals.npy --geometry sim/geometry.json --method fbp --no-progress -o dicom/
python -c 'import drct as ct, numpy as np, tifffile
v, vg = ct.formats.read_dicom_series("dicom")
ref = tifffile.imread("recon/fbp.tif")
print("   DICOM series read back:", v.shape, vg.voxel_size, "max |difference| to the TIFF:", float(np.abs(v[0] - ref).max()))'
echo "   venv size with [formats]: $(du -sh "$work/venv" | cut -f1)"
done_step

step "torch==2.13.0 (the local CPU wheel), then the [torch] extra"
cd "$work"
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check "$wheel[torch]"
found=$(cuda_packages | grep -viE '^torch==' || true)
[ -z "$found" ] || fail "the torch extra brought CUDA packages: $found"
python -c 'import torch, drct as ct, drct.torch; print("   torch", torch.__version__, "cuda:", torch.version.cuda, "| drct.torch:", ", ".join(sorted(n for n in dir(ct.torch) if not n.startswith("_"))[:6]), "...")'
echo "   venv size with torch: $(du -sh "$work/venv" | cut -f1)"
done_step

echo
echo "check_wheel: all passed ($work)"
