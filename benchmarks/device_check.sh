#!/usr/bin/env bash
# The GPU checks of the speed issue in one call of a lent GPU machine: the CUDA tests, then the throughput and
# roofline benchmarks, each log written to $OUT (what the machine sends back).
#
# That machine has Python 3.12 with numpy, scipy, matplotlib, tqdm, tifffile and pytest, but no Dr.Jit, no
# tomli-w and no LLVM (tests/test_cuda.py compares CUDA against the CPU backend), and it cannot download. So:
#
#   here:   bash benchmarks/device_check.sh prepare       # wheels and libLLVM 19 into .device/ (47 MB, git-ignored)
#   there:  bash benchmarks/device_check.sh run [SECONDS] # with .device carried; SECONDS caps the three steps
#
# The run installs the wheels into /tmp/site and unpacks LLVM into /tmp/llvm (nothing outside /tmp), then runs
#   1. python -m pytest -q tests/test_cuda.py (the CUDA operators against the CPU ones, the adjoint test; its
#      torch tests need a torch with CUDA, which that machine's python3 has)
#   2. benchmarks/bench_projector.py on cone128 and parallel2d, every basis (GVU/s, x forward, peak memory)
#   3. benchmarks/bench_roofline.py on cone128 (the share of the card's memory and gather/scatter limits)
# Each step is cut at its share of SECONDS (default 480; the set-up before them takes a minute or so more), so
# that the logs come back within one call; every benchmark prints its rows as they come.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"

if [ "$mode" = prepare ]; then
    set -e
    version="$(python3 -c 'import drjit; print(drjit.__version__)')"  # the Dr.Jit this checkout is tested with
    mkdir -p .device/wheels
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .device/wheels "drjit==$version" tomli-w
    # libLLVM and the libraries it links that the machine's image may lack (unpacked into /tmp/llvm there)
    (cd .device && apt-get download -q libllvm19 libz3-4 libedit2 libxml2 libicu72 libbsd0 libmd0)
    du -sh .device
    exit 0
fi
if [ "$mode" != run ]; then
    echo "usage: bash benchmarks/device_check.sh prepare|run [SECONDS]" >&2
    exit 2
fi

budget="${2:-480}"
out="${OUT:-/tmp/device_out}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/wheels/*.whl || exit 1
mkdir -p /tmp/llvm && for deb in .device/*.deb; do dpkg -x "$deb" /tmp/llvm || exit 1; done
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH="/tmp/llvm/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
DRJIT_LIBLLVM_PATH="$(find /tmp/llvm -name 'libLLVM*.so*' | head -1)"
export DRJIT_LIBLLVM_PATH
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/gpu.txt"
python3 -m drct.cli info 2>&1 | tee -a "$out/gpu.txt"

timeout "$((budget / 4))" python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log"
timeout "$((budget / 2))" python3 benchmarks/bench_projector.py --workloads cone128,parallel2d --repeat 5 \
    2>&1 | tee "$out/bench_projector.md"
timeout "$((budget / 4))" python3 benchmarks/bench_roofline.py --workloads cone128 --repeat 5 \
    2>&1 | tee "$out/bench_roofline.md"
