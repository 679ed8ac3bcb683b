"""Measurement: the one home of every benchmark and results report (docs/results/ holds what they wrote).

    compare          methods side by side on GLUE (trains through pipeline.trainer); `python -m pipeline.compare`
    latency/         on-device latency in the ExecuTorch runtime, all methods; `python -m apps.latency`
    export_report    an export's sizes, runtime parity, fp16 memories, int8 accuracy; `-m benchmarks.export_report`
    train_throughput training seconds per step per method; `python -m benchmarks.train_throughput`
    server_load      the demo server under concurrent clients; `python -m benchmarks.server_load`

Each writes JSON + markdown with the command that reproduces it; timings are interleaved, medians with spread.
"""
