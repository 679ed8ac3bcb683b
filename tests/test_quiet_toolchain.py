"""The toolchain's harmless start-up noise is dropped by its exact text; other warnings still show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import logging, warnings
import spartan_toolchain
spartan_toolchain.install()
import torchao, coremltools
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
import numpy as np
np.array([1e6]).astype(np.float16)  # an overflow outside coremltools still warns
logging.getLogger("coremltools").warning("canary: another coremltools warning")
"""


@pytest.mark.slow
def test_known_noise_is_dropped_and_other_warnings_show():
    p = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert any("canary: another coremltools warning" in ln for ln in lines)
    assert any("overflow encountered in cast" in ln for ln in lines)
    for noise in ("_C_mxfp8", "has not been tested with coremltools", "Enum subclass", "libcoremlpython", "LeafSpec"):
        assert not any(noise in ln for ln in lines), (noise, lines)


NATIVE_PROBE = """
import os, sys
import spartan_toolchain
with spartan_toolchain.native_stderr_filtered():
    os.write(2, b"[cpuinfo_utils.cpp:87] Failed to open midr file /sys/devices/soc0/image_version\\n")
    os.write(2, b"[cpuinfo_utils.cpp:125] CPU info and manual query on # of cpus dont match.\\n")
    os.write(2, b"[program.cpp:1] a real runtime error\\n")
    print("python's own warning", file=sys.stderr)
os.write(2, b"after the block\\n")
"""


def test_native_cpuinfo_lines_dropped_other_native_output_kept():
    p = subprocess.run([sys.executable, "-c", NATIVE_PROBE], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == ["[program.cpp:1] a real runtime error", "python's own warning", "after the block"]
