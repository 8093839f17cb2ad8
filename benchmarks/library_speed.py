"""Hand-written numpy code versus the library that also does it: speed of the metrics, quality of the splits.

Metrics (10,000 samples, best of 3 x 20 calls):
  accuracy   mmhal.metrics.accuracy        vs sklearn.metrics.accuracy_score
  macro-F1   mmhal.metrics.macro_f1        vs sklearn.metrics.f1_score(average="macro", labels=present classes)
  ROC AUC    mmhal.metrics._auc            vs sklearn.metrics.roc_auc_score
Accuracy and macro-F1 run on the validation split after every epoch of every student; the AUC after each PAD
evaluation. The values agree exactly; only the time differs.

Splits (data without a ``split`` key; val_fraction = test_fraction = 0.2):
  mmhal      mmhal.data.split.make_split (greedy whole-group assignment by class deficit, seeded)
  sgkf       scikit-learn's StratifiedGroupKFold used for a 3-way split: test = one fold of round(1 / 0.2) = 5,
             then val = one fold of round(0.8 / 0.2) = 4 of the rest (the closest it comes to given fractions)
For each data set and seed 0..19 it reports the worst |share of a split - its target| over the splits
("size") and over splits x classes ("class"), as the mean over seeds; groups never cross splits in either.

    python benchmarks/library_speed.py
"""
from __future__ import annotations

import sys
import timeit
from pathlib import Path

import numpy as np

try:
    import mmhal  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmhal import metrics
from mmhal.data.split import make_split

FRACTIONS = (0.2, 0.2)


def best_ms(fn, number: int = 20) -> float:
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e3


def bench_metrics() -> None:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    rng = np.random.default_rng(0)
    print(f"{'metric':<22}{'numpy ms':>10}{'sklearn ms':>12}{'ratio':>8}")
    for k in (6, 100):
        y = rng.integers(0, k, 10_000)
        p = np.where(rng.random(10_000) < 0.8, y, rng.integers(0, k, 10_000))
        labels = np.union1d(y, p)
        assert metrics.macro_f1(y, p, k) == f1_score(y, p, average="macro", labels=labels)
        for name, ours, theirs in (
            (f"accuracy, K={k}", lambda: metrics.accuracy(y, p), lambda: accuracy_score(y, p)),
            (f"macro-F1, K={k}", lambda: metrics.macro_f1(y, p, k),
             lambda: f1_score(y, p, average="macro", labels=labels)),
        ):
            a, b = best_ms(ours), best_ms(theirs)
            print(f"{name:<22}{a:>10.3f}{b:>12.3f}{b / a:>7.1f}x")
    s = rng.random(10_000)
    bf = rng.random(10_000) < 0.5
    pos, neg = np.sort(s[bf]), np.sort(s[~bf])
    assert abs(metrics._auc(pos, neg) - roc_auc_score(bf, s)) < 1e-12
    a, b = best_ms(lambda: metrics._auc(pos, neg)), best_ms(lambda: roc_auc_score(bf, s))
    print(f"{'ROC AUC':<22}{a:>10.3f}{b:>12.3f}{b / a:>7.1f}x")


def sgkf_split(labels: np.ndarray, groups: np.ndarray, val: float, test: float, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    out = np.full(len(labels), "train", dtype="<U5")
    outer = StratifiedGroupKFold(n_splits=round(1 / test), shuffle=True, random_state=seed)
    rest, test_idx = next(outer.split(np.zeros(len(labels)), labels, groups))
    out[test_idx] = "test"
    inner = StratifiedGroupKFold(n_splits=round((1 - test) / val), shuffle=True, random_state=seed)
    _, val_idx = next(inner.split(np.zeros(len(rest)), labels[rest], groups[rest]))
    out[rest[val_idx]] = "val"
    return out


def deviations(split: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    targets = {"train": 1 - sum(FRACTIONS), "val": FRACTIONS[0], "test": FRACTIONS[1]}
    for g in np.unique(groups):
        assert len(set(split[groups == g].tolist())) == 1, "a group crosses splits"
    size = max(abs((split == s).mean() - t) for s, t in targets.items())
    cls = max(abs((split[labels == k] == s).mean() - t) for s, t in targets.items() for k in np.unique(labels))
    return size, cls


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = {}
    sizes = rng.integers(20, 80, 60)
    out["60 mixed groups, 4 classes"] = (
        np.concatenate([rng.integers(0, 4, s) for s in sizes]), np.repeat(np.arange(60), sizes))
    out["40 one-class groups, 2 classes"] = (np.repeat([0, 1] * 20, 10), np.repeat(np.arange(40), 10))
    # 200 subjects, 5 classes, each subject holding 1-3 classes with skewed class frequencies
    labels, groups = [], []
    for g in range(200):
        classes = rng.choice(5, size=rng.integers(1, 4), replace=False, p=[0.4, 0.25, 0.15, 0.12, 0.08])
        n = int(rng.integers(5, 40))
        labels.append(rng.choice(classes, n))
        groups.append(np.full(n, g))
    out["200 subjects, 1-3 of 5 skewed classes"] = (np.concatenate(labels), np.concatenate(groups))
    cache = Path.home() / ".cache" / "mmhal" / "hapt-v1.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            out["HAPT windows, 30 subjects"] = (z["label"], z["subject"])
    return out


def bench_splits() -> None:
    print(f"\n{'data':<40}{'method':<8}{'size dev':>10}{'class dev':>11}{'ms':>8}")
    for name, (labels, groups) in datasets().items():
        for method, fn in (("mmhal", make_split), ("sgkf", sgkf_split)):
            devs = [deviations(fn(labels, groups, *FRACTIONS, seed), labels, groups) for seed in range(20)]
            ms = best_ms(lambda: fn(labels, groups, *FRACTIONS, 0), number=3)
            size, cls = np.mean(devs, axis=0)
            print(f"{name:<40}{method:<8}{size:>10.3f}{cls:>11.3f}{ms:>8.1f}")


if __name__ == "__main__":
    bench_metrics()
    bench_splits()
