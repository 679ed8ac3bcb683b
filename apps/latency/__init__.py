"""`python -m apps.latency`: the on-device latency comparison (bare backbone vs SPARTAN, Houlsby, Pfeiffer and LoRA in
the ExecuTorch runtime). The user-facing command lives here beside the device client; the code is in
benchmarks/latency/ with the other measurements."""
