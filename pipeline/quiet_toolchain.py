"""Silence the toolchain's known, harmless start-up messages that read like failures, each by its exact text.

Every CLI calls `install()` before importing torch. Only these messages are dropped; any other warning or log line
from the same libraries still shows:
- torchao: "Failed to load .../torchao/_C_*.so" (CUDA/other-Python kernels in the CPU wheel; unused here);
- torch pytree: "<enum ...> is an Enum subclass and is now natively supported..." (torchao registers an Enum);
- torch pytree: "`isinstance(treespec, LeafSpec)` is deprecated" FutureWarning (raised inside ExecuTorch/torchao);
- coremltools: "Torch version ... has not been tested", "scikit-learn version ... is not supported", "Failed to load
  _ML...Proxy" (no Core ML runtime on Linux; conversion does not need it);
- numpy "overflow encountered in cast" RuntimeWarning inside coremltools' fp16 constant folding (values clamp to
  the fp16 range, which is what a fp16 program computes anyway).
"""

from __future__ import annotations

import logging
import re
import warnings

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
