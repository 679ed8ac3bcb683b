"""python -m apps.latency [--model minilm|roberta-base-random|DIR] [--out docs/results] [options]; see
benchmarks/latency/__main__.py."""

import sys

from benchmarks.latency.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
