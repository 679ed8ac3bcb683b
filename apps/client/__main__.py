"""python -m apps.client --server URL --task TASK [--task TASK2 ...] "some text" [--pair "second text"]"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from .client import EdgeClient, format_prediction
from .errors import ClientError

DEFAULT_CACHE = Path(os.environ.get("SPARTAN_EDGE_CACHE", Path.home() / ".cache" / "spartan-edge"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m apps.client", description="SPARTAN Edge device client")
    ap.add_argument("text")
    ap.add_argument("--pair", help="second text of a sentence pair (e.g. RTE)")
    ap.add_argument("--server", default=os.environ.get("SPARTAN_EDGE_SERVER"))
    ap.add_argument("--task", action="append", required=True, help="repeat to run several tasks on one backbone")
    ap.add_argument("--target", default="android", help="android (ExecuTorch); ios bundles cannot run off Apple")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--offline", action="store_true", help="use the cache only; no network")
    ap.add_argument("--json", action="store_true", help="one JSON object per task on stdout")
    args = ap.parse_args(argv)
    try:
        client = EdgeClient(args.server, args.cache, args.target, offline=args.offline)
        if not args.json:  # say what was classified: the answer alone is hard to read back
            print(f"text: {args.text!r}" + (f"  pair: {args.pair!r}" if args.pair else ""), flush=True)
        for task in args.task:
            p = client.predict(task, args.text, args.pair)
            print(json.dumps(dataclasses.asdict(p)) if args.json else format_prediction(p), flush=True)
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
