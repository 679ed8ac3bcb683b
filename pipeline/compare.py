"""`python -m pipeline.compare ...`: the comparison lives with the other measurements (benchmarks/compare.py); this is
its entry point, kept where the training commands are."""

import sys

from benchmarks.compare import main

if __name__ == "__main__":
    sys.exit(main())
