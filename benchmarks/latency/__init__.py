"""On-device latency comparison: bare backbone vs SPARTAN, Houlsby, Pfeiffer and LoRA in the ExecuTorch runtime.

    python -m apps.latency --out docs/results                       # MiniLM (default)
    python -m apps.latency --model roberta-base-random --out docs/results

Uses mobile_export (the same export and lowering as `python -m pipeline.export`) and the ExecuTorch runtime; never
the server. It imports pipeline: it builds the baselines with pipeline's method constructions. The command stays
`python -m apps.latency` (apps/latency/ is its entry point).
"""
