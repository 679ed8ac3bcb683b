"""Device-side applications: `client/` is what a phone does, in Python (HTTP, cache, integrity, ExecuTorch runtime) and
never imports `pipeline`; `latency/` is only the entry point of the on-device latency benchmark, whose code (which
does use pipeline and mobile_export to build its programs) is in benchmarks/latency/."""
