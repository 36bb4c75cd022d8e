"""drct picks a libLLVM >= 19 before Dr.Jit loads one, whatever the import order inside the package."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from drct.backend import _find_libllvm


def test_import_drct_sets_the_llvm_library_before_drjit_loads() -> None:
    expected = _find_libllvm()
    if expected is None:
        pytest.skip("no libLLVM >= 19 found on this machine")
    env = {k: v for k, v in os.environ.items() if k != "DRJIT_LIBLLVM_PATH"}
    code = "import os, drct; print(os.environ.get('DRJIT_LIBLLVM_PATH'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
