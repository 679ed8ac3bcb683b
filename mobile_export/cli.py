"""`python -m pipeline.export --target android|ios|all --memories RUN [RUN ...] --out DIST` (a new export), or
`... --memories RUN [RUN ...] --into DIST` (add tasks to an existing export; its programs stay as they are)."""

from __future__ import annotations

import argparse
import sys

DEFAULT_MAX_LABELS = 8  # bundle.DEFAULT_MAX_LABELS; repeated so that --help does not import torch


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.export",
                                description="Export task memories and their shared backbone for Android and iOS.")
    p.add_argument("--target", default="all", help="android, ios or all (default: all); ignored with --into")
    p.add_argument("--memories", nargs="+", required=True, metavar="DIR",
                   help="task artifacts (run folders holding task.safetensors, or the files)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIST", help="new output folder (programs + memories); must not exist yet")
    where.add_argument("--into", metavar="DIST",
                       help="existing export folder: add the tasks' memory files and manifest entries (seconds; "
                            "the programs are not rebuilt or touched)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="dynamic int8 linears in the Android program (iOS stays fp16)")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--max-labels", type=int, default=DEFAULT_MAX_LABELS,
                   help="rows of the program's head input; tasks with fewer outputs are zero-padded")
    p.add_argument("--memory-dtype", choices=["fp32", "fp16"], default="fp32")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import spartan_toolchain
    from pipeline.errors import UserError

    from .bundle import add_memories, export_bundle

    spartan_toolchain.install()
    try:
        if args.into:
            add_memories(args.into, args.memories, memory_dtype=args.memory_dtype, quiet=args.quiet)
        else:
            export_bundle(args.memories, args.out, args.target, quantize=args.quantize,
                          max_seq_length=args.max_seq_length, max_labels=args.max_labels,
                          memory_dtype=args.memory_dtype, quiet=args.quiet)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
