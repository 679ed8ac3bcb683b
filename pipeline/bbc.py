"""BBC News (Greene & Cunningham 2006; 2,225 articles in five topic folders) as train/dev CSV files for pipeline.train.

    python -m pipeline.bbc --src ../shared/data/bbc --out runs/bbc_data [--dev-fraction 0.2 --seed 0]

Each article becomes one row (text = title + body on one line, label = its folder). The split is stratified by topic
and seeded, so the same command always gives the same files. Files that are not UTF-8 are read as latin-1 (a few
BBC files carry a stray byte).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

TOPICS = ("business", "entertainment", "politics", "sport", "tech")


def read_articles(src: str | Path) -> list[tuple[str, str]]:
    src = Path(src)
    rows = []
    for topic in TOPICS:
        folder = src / topic
        if not folder.is_dir():
            raise SystemExit(f"error: {folder} is missing; --src must be the BBC folder with {', '.join(TOPICS)}")
        for f in sorted(folder.glob("*.txt")):
            raw = f.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            rows.append((" ".join(text.split()), topic))
    return rows


def split(rows: list[tuple[str, str]], dev_fraction: float, seed: int) -> tuple[list, list]:
    rng = random.Random(seed)
    train, dev = [], []
    for topic in TOPICS:
        mine = [r for r in rows if r[1] == topic]
        rng.shuffle(mine)
        n_dev = round(dev_fraction * len(mine))
        dev += mine[:n_dev]
        train += mine[n_dev:]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("text", "label"))
        w.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bbc", description=__doc__.split("\n")[0])
    p.add_argument("--src", default="../shared/data/bbc")
    p.add_argument("--out", required=True)
    p.add_argument("--dev-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    train, dev = split(read_articles(args.src), args.dev_fraction, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "train.csv", train)
    write(out / "dev.csv", dev)
    print(f"{out}/train.csv: {len(train)} articles, {out}/dev.csv: {len(dev)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
