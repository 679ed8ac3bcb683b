"""Task data: GLUE from local GLUE-format files or the Hugging Face hub, and any user CSV/TSV/JSONL file.

Everything ends as `TaskData`: a `TaskSpec` (labels, regression or not), the metric kind, and two `Examples`.
"""

from __future__ import annotations

import gzip
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .model import TaskSpec

REPO_DATA = Path(__file__).resolve().parent.parent / "data" / "glue"  # vendored (SST-2 only)
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "glue"


@dataclass
class Examples:
    text_a: list[str]
    text_b: list[str] | None
    labels: list  # int class indices, or float targets for regression

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: list[int]) -> Examples:
        pick = lambda xs: [xs[i] for i in indices]  # noqa: E731
        return Examples(pick(self.text_a), pick(self.text_b) if self.text_b else None, pick(self.labels))


@dataclass
class TaskData:
    spec: TaskSpec
    metric: str  # a key of metrics.METRIC_SETS
    train: Examples
    validation: Examples


@dataclass(frozen=True)
class GlueTask:
    folder: str
    text_a: str
    text_b: str | None
    label: str
    raw_labels: tuple[str, ...] | None  # label values as written in the files, in class-index order; None = regression
    label_names: tuple[str, ...]
    metric: str
    columns: tuple[str, ...] | None = None  # for header-less files (CoLA)
    encoding: str = "utf-8"


GLUE = {
    "sst2": GlueTask("SST-2", "sentence", None, "label", ("0", "1"), ("negative", "positive"), "accuracy"),
    "mrpc": GlueTask(
        "MRPC", "#1 String", "#2 String", "Quality", ("0", "1"), ("not_equivalent", "equivalent"), "f1_accuracy",
        encoding="utf-8-sig",
    ),
    "rte": GlueTask(
        "RTE", "sentence1", "sentence2", "label", ("entailment", "not_entailment"),
        ("entailment", "not_entailment"), "accuracy",
    ),
    "cola": GlueTask(
        "CoLA", "sentence", None, "label", ("0", "1"), ("unacceptable", "acceptable"), "matthews",
        columns=("source", "label", "mark", "sentence"),
    ),
    "stsb": GlueTask("STS-B", "sentence1", "sentence2", "score", None, (), "pearson_spearman"),
}
# Column names of the same tasks in the Hugging Face hub's `nyu-mll/glue` dataset.
HUB_COLUMNS = {"sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"), "rte": ("sentence1", "sentence2"),
               "cola": ("sentence", None), "stsb": ("sentence1", "sentence2")}


def default_data_dir() -> Path | None:
    for d in (REPO_DATA, SHARED_DATA):
        if d.is_dir():
            return d
    return None


def load_glue(task: str, data_dir: str | Path | None = None) -> TaskData:
    """A GLUE task from local GLUE-format files (the layout of the GLUE zips)."""
    if task not in GLUE:
        raise UserError(
            f"unknown task {task!r}; GLUE tasks are {', '.join(GLUE)} (or use --train-file for your own data)"
        )
    t = GLUE[task]
    roots = [Path(data_dir)] if data_dir else [REPO_DATA, SHARED_DATA]
    for root in roots:
        if (root / t.folder / "dev.tsv").is_file():
            break
    else:
        looked = "; ".join(f"{r / t.folder / 'dev.tsv'}{'' if r.is_dir() else f' ({r} does not exist)'}"
                           for r in roots)
        raise UserError(
            f"no {t.folder}/dev.tsv for task {task} (looked in: {looked}); pass --data-dir pointing at a GLUE folder "
            f"(e.g. ../shared/data/glue) or --hub to download it"
        )
    spec = TaskSpec(task, list(t.label_names), t.raw_labels is None)
    splits = [_glue_split(t, _glue_file(root / t.folder, split), task) for split in ("train", "dev")]
    return TaskData(spec, t.metric, *splits)


def _glue_file(folder: Path, split: str) -> Path:
    for name in (f"{split}.tsv", f"{split}.tsv.gz"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"missing {folder / (split + '.tsv')}")


def _glue_split(t: GlueTask, path: Path, task: str) -> Examples:
    # GLUE TSVs have no quoting: split on tabs (csv readers mangle the '"' in the text).
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding=t.encoding) as f:
        lines = f.read().split("\n")
    lines = [ln for ln in lines if ln]
    first_line = 1 if t.columns else 2  # file line of the first example
    header = list(t.columns) if t.columns else lines.pop(0).split("\t")
    rows = []
    for i, ln in enumerate(lines):
        fields = ln.split("\t")
        if len(fields) != len(header):
            raise UserError(f"{path} line {i + first_line}: {len(fields)} tab-separated fields, expected "
                            f"{len(header)}")
        rows.append(dict(zip(header, fields, strict=True)))
    return _to_examples(rows, t.text_a, t.text_b, t.label, t.raw_labels, f"{path}", first_line)


def _to_examples(rows: list[dict], a: str, b: str | None, label: str, raw_labels, where: str,
                 first_line: int | None = None) -> Examples:
    """Rows -> Examples. `first_line`: the file line of rows[0], so errors name the line an editor shows (None for
    hub splits: errors name the row index)."""
    at = (lambda i: f"{where} line {first_line + i}") if first_line else (lambda i: f"{where} row {i}")  # noqa: E731
    if not rows:
        raise UserError(f"{where} has no examples")
    missing = [c for c in (a, b, label) if c is not None and c not in rows[0]]
    if missing:
        raise UserError(f"{where} has no column {missing[0]!r}; its columns are {', '.join(map(str, rows[0]))}")
    labels = []
    for i, r in enumerate(rows):
        value = r[label]
        if raw_labels is None:
            try:
                y = float("nan" if value is None else value)
            except (TypeError, ValueError):
                raise UserError(f"{at(i)}: regression target {value!r} is not a number") from None
            if not math.isfinite(y):
                raise UserError(f"{at(i)}: regression target is missing or {y}; remove or fix that row")
            labels.append(y)
        else:
            key = _label_key(value)
            if key not in raw_labels:
                raise UserError(
                    f"{at(i)}: label {value!r} is not one of the task's labels ({', '.join(raw_labels)})"
                )
            labels.append(raw_labels.index(key))
    text = lambda c: [str(r[c]) if r[c] is not None else "" for r in rows]  # noqa: E731
    return Examples(text(a), text(b) if b else None, labels)


def _label_key(value) -> str:
    """Labels compare as strings; 1.0 read from a file counts as '1'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def load_user_files(
    train_file: str, validation_file: str, text_column: str, text_pair_column: str | None, label_column: str,
    task_type: str = "auto", name: str = "custom",
) -> TaskData:
    """A task from the user's CSV/TSV/JSONL files. Labels may be strings; a float column can be a regression target."""
    train_rows = _read_rows(train_file)
    val_rows = _read_rows(validation_file)
    for column in (text_column, text_pair_column, label_column):
        if column is not None and column not in train_rows[0]:
            raise UserError(f"{train_file} has no column {column!r}; its columns are {', '.join(train_rows[0])}")
    values = [r[label_column] for r in train_rows]
    regression = task_type == "regression" or (task_type == "auto" and _looks_continuous(values))
    raw_labels = None if regression else tuple(sorted({_label_key(v) for v in values}, key=_natural))
    spec = TaskSpec(name, list(raw_labels or ()), regression)
    metric = "pearson_spearman" if regression else "accuracy"
    if raw_labels is not None and len(raw_labels) < 2:
        raise UserError(f"{train_file}: column {label_column!r} has a single label {raw_labels}; need at least two")
    train = _to_examples(train_rows, text_column, text_pair_column, label_column, raw_labels, train_file,
                         _first_line(train_file))
    val = _to_examples(val_rows, text_column, text_pair_column, label_column, raw_labels, validation_file,
                       _first_line(validation_file))
    return TaskData(spec, metric, train, val)


def _first_line(path: str) -> int:
    """File line of the first example: 2 below a CSV/TSV header, 1 in JSON lines."""
    return 1 if ".json" in Path(path).name else 2


def _natural(s: str):
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def _looks_continuous(values: list) -> bool:
    try:
        nums = [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return any(not (math.isnan(x) or x.is_integer()) for x in nums)


def _read_rows(path: str) -> list[dict]:
    import datasets  # imported here: slow to import and only needed for user files and the hub

    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file not found: {path}")
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    kinds = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t", "quoting": 3}),
             ".jsonl": ("json", {}), ".json": ("json", {})}
    if suffix not in kinds:
        raise UserError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .jsonl")
    builder, kwargs = kinds[suffix]
    datasets.disable_progress_bars()
    if p.stat().st_size == 0:
        raise UserError(f"{path} has no examples (the file is empty)")
    try:
        ds = datasets.load_dataset(builder, data_files=str(p), split="train", **kwargs)
    except ValueError as e:
        if "corresponds to no data" in str(e):  # a header and nothing else
            raise UserError(f"{path} has no examples") from None
        raise UserError(f"cannot read {path}: {str(e).splitlines()[0]}") from e
    except Exception as e:  # datasets raises many types for malformed files
        raise UserError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    rows = ds.to_list()
    if not rows:
        raise UserError(f"{path} has no examples")
    return rows


def load_hub(task: str) -> TaskData:
    """A GLUE task from the Hugging Face hub (`nyu-mll/glue`). Offline, fails at once naming the local alternative."""
    if task not in GLUE:
        raise UserError(f"unknown task {task!r}; GLUE tasks are {', '.join(GLUE)}")
    hint = f"use the local GLUE files instead: --data-dir ../shared/data/glue (task {task})"
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        raise UserError(f"the Hugging Face hub is switched off (HF_HUB_OFFLINE); {hint}")
    import datasets

    try:
        ds = datasets.load_dataset("nyu-mll/glue", task)
    except Exception as e:  # connection errors arrive wrapped in several types
        raise UserError(f"cannot download glue/{task} from the Hugging Face hub ({type(e).__name__}); {hint}") from e
    t = GLUE[task]
    a, b = HUB_COLUMNS[task]
    spec = TaskSpec(task, list(t.label_names), t.raw_labels is None)
    raw = None if t.raw_labels is None else tuple(str(i) for i in range(len(t.label_names)))
    splits = [_to_examples(ds[s].to_list(), a, b, "label", raw, f"glue/{task}/{s}") for s in ("train", "validation")]
    return TaskData(spec, t.metric, *splits)


def limit_train(data: TaskData, max_train_samples: int | None, few_shot: int | None, seed: int) -> TaskData:
    """--max-train-samples keeps the first N (run_glue's rule); --few-shot draws N at random with the seed."""
    train = data.train
    if few_shot:
        if few_shot > len(train):
            raise UserError(f"--few-shot {few_shot} is more than the {len(train)} training examples")
        idx = sorted(random.Random(seed).sample(range(len(train)), few_shot))
        train = train.subset(idx)
    if max_train_samples:
        train = train.subset(list(range(min(max_train_samples, len(train)))))
    return TaskData(data.spec, data.metric, train, data.validation)


def hold_out(data: TaskData, n: int, seed: int) -> TaskData:
    """Move n training examples (drawn with the seed) into validation: for tuning without touching dev."""
    if not 0 < n < len(data.train):
        raise UserError(f"--holdout {n} must be between 1 and the {len(data.train) - 1} training examples")
    picked = set(random.Random(seed + 7919).sample(range(len(data.train)), n))
    keep = [i for i in range(len(data.train)) if i not in picked]
    return TaskData(data.spec, data.metric, data.train.subset(keep), data.train.subset(sorted(picked)))
