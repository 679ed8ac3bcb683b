"""Silence the toolchain's known, harmless start-up messages that read like failures, each by its exact text.

A torch-free top-level module because both sides use it: the workstation CLIs (pipeline, mobile_export, benchmarks)
and the device client (apps.client, which never imports pipeline). Every CLI calls `install()` before importing
torch; the client also loads its ExecuTorch program inside `native_stderr_filtered()`.

Only these messages are dropped; any other warning or log line from the same libraries still shows:
- torchao: "Failed to load .../torchao/_C_*.so" (CUDA/other-Python kernels in the CPU wheel; unused here);
- torch pytree: "<enum ...> is an Enum subclass and is now natively supported..." (torchao registers an Enum);
- torch pytree: "`isinstance(treespec, LeafSpec)` is deprecated" FutureWarning (raised inside ExecuTorch/torchao);
- coremltools: "Torch version ... has not been tested", "scikit-learn version ... is not supported", "Failed to load
  _ML...Proxy" (no Core ML runtime on Linux; conversion does not need it);
- ExecuTorch's C++ runtime (pybindings): cpuinfo's "[cpuinfo_utils.cpp:N] Reading file ... / Failed to open midr
  file ... / CPU info and manual query on # of cpus dont match." Info lines, written to fd 2 from C++ on any non-ARM
  machine (`native_stderr_filtered`; the native runtime drops them with its own log sink, apps/native);
- torch: "`torch.jit.script_method` is deprecated" DeprecationWarning, raised by torch's own torch/utils/mkldnn.py
  when executorch.exir or coremltools import it;
- numpy "overflow encountered in cast" RuntimeWarning inside coremltools' fp16 constant folding (values clamp to
  the fp16 range, which is what a fp16 program computes anyway).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# logger name -> what its dropped records start with or contain
_LOG_PATTERNS = {
    "torchao": re.compile(r"Failed to load .*torchao/_C\w*\.(abi3\.)?\S*so"),
    "torch.utils._pytree": re.compile(r".* is an Enum subclass and is now natively supported"),
    "coremltools": re.compile(r"Torch version \S+ has not been tested with coremltools"
                              r"|scikit-learn version \S+ is not supported"
                              r"|Failed to load _ML\w+Proxy: No module named 'coremltools\.libcoremlpython'"),
}
WARNING_FILTERS = (  # (message regex, category, module regex), as for warnings.filterwarnings
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, ""),
    (r"overflow encountered in cast", RuntimeWarning, r"coremltools\."),
    (r"`torch\.jit\.script_method` is deprecated", DeprecationWarning, ""),
)


class _Drop(logging.Filter):
    def __init__(self, pattern: re.Pattern) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def install() -> None:
    """Idempotent; call before importing torchao, executorch or coremltools."""
    for name, pattern in _LOG_PATTERNS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop(pattern))
    for message, category, module in WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


# ExecuTorch's cpuinfo probe (runtime/platform + XNNPACK init) logs these at Info level straight from C++.
_NATIVE_NOISE = re.compile(r"^\[cpuinfo_utils\.cpp:\d+\] (Reading file |Failed to open midr file |CPU info and manual "
                           r"query on # of cpus dont match)")


@contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Within: what C++ code writes to fd 2 is held back, then re-emitted without the cpuinfo lines above.

    Python's logging cannot see those lines (they bypass sys.stderr), so fd 2 itself is swapped for a temp file for
    the duration; every other line, Python's own included, still reaches stderr, in order, when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not _NATIVE_NOISE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def executorch_runtime():  # -> type[executorch.runtime.Runtime]
    """ExecuTorch's `Runtime` class (the C++ runtime's pybindings) without importing the ExecuTorch compiler.

    The wheel's `extension/pybindings/portable_lib.py` imports `executorch.exir._warnings` for one warning class, and
    Python runs `executorch/exir/__init__.py` (the whole compiler, ~7 s of a cold start on two cores) to get it. A
    device never lowers a program, so while the runtime and the quantized kernels load, `executorch.exir` is a bare
    package (the real directory, no `__init__` run); afterwards every trace of it is removed, so a later
    `import executorch.exir` (the workstation side, in the same process) runs the real one. Written by hand: the
    wheel has no lighter entry point. tests/test_client.py checks both halves."""
    import types

    import executorch

    bare = None
    if "executorch.exir" not in sys.modules:  # else the compiler is loaded anyway: nothing to save
        bare = types.ModuleType("executorch.exir")
        bare.__path__ = [os.path.join(executorch.__path__[0], "exir")]
        sys.modules["executorch.exir"] = bare
    try:
        import executorch.kernels.quantized  # noqa: F401  (int8 programs read their embeddings with its kernel)
        from executorch.runtime import Runtime
    finally:
        if bare is not None:
            for name in [n for n in sys.modules if n == "executorch.exir" or n.startswith("executorch.exir.")]:
                del sys.modules[name]
            if getattr(executorch, "exir", None) is bare:
                del executorch.exir
    return Runtime
