"""Peak RSS of one ExecuTorch program in a fresh process (run by bench.peak_rss; prints one JSON line).

    python -m benchmarks.latency.rss PROGRAM.pte --seq 128 --batch 1 --threads 2 --shapes '[[6,16,384], ...]'

Reports the resident memory after imports (the runtime itself) and the high-water mark after loading the program
and running it a few times; the difference is what the program costs.
"""

from __future__ import annotations

import argparse
import json


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.latency.rss")
    ap.add_argument("program")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", required=True, help="JSON list of the memory/head input shapes")
    args = ap.parse_args(argv)
    import torch
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    from mobile_export.android import load_forward

    _unsafe_reset_threadpool(args.threads)
    inputs = [torch.zeros(s) for s in json.loads(args.shapes)]
    ids = torch.full((args.batch, args.seq), 1000, dtype=torch.int64)
    before = _status_kb("VmRSS")
    method = load_forward(args.program)
    for _ in range(3):
        method.execute([ids, torch.ones_like(ids), *inputs])
    peak = _status_kb("VmHWM")
    print(json.dumps({"rss_before_load_mb": round(before / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
                      "program_peak_mb": round((peak - before) / 1024, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
