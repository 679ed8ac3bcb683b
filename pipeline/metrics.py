"""GLUE metrics, computed with scikit-learn and SciPy (the same definitions as the GLUE benchmark)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

# Which metrics each kind of task reports; the first is the one a task is ranked by.
METRIC_SETS = {
    "accuracy": ["accuracy"],
    "f1_accuracy": ["f1", "accuracy"],
    "matthews": ["matthews_correlation"],
    "pearson_spearman": ["pearson", "spearmanr"],
}


def compute_metrics(kind: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Metrics for one evaluation, keyed as Hugging Face's run_glue does (plus combined_score for pairs)."""
    out: dict[str, float] = {}
    for name in METRIC_SETS[kind]:
        if name == "accuracy":
            out[name] = accuracy_score(labels, predictions)
        elif name == "f1":
            out[name] = f1_score(labels, predictions)
        elif name == "matthews_correlation":
            out[name] = matthews_corrcoef(labels, predictions)
        elif name == "pearson":
            out[name] = pearsonr(predictions, labels)[0]
        elif name == "spearmanr":
            out[name] = spearmanr(predictions, labels)[0]
    out = {k: float(v) for k, v in out.items()}
    if len(out) > 1:
        out["combined_score"] = float(np.mean(list(out.values())))
    return out


def primary_metric(kind: str) -> str:
    return "combined_score" if len(METRIC_SETS[kind]) > 1 else METRIC_SETS[kind][0]
