"""Seeded, stratified, group-aware train/val/test splits for data that comes without one.

With groups (e.g. subject ids) every group lands wholly in one split: the groups are shuffled with
the seed and each one goes to the split whose share of the group's classes lies furthest below its
target share. Without groups (or when every sample is its own group) each class is shuffled and cut
so that every split receives its fraction of every class. In both cases every class keeps at least
one training sample where the data allows it.

Why not scikit-learn's ``StratifiedGroupKFold``: it cuts k equal folds, so it reaches a fraction only as
1/k (0.15 becomes 1/7 = 0.143) and a three-way split needs two rounds of it; measured over 20 seeds at
val = test = 0.2 (``benchmarks/library_speed.py``), its worst class-share error is no better overall
(HAPT's 30 subjects: 0.032 against 0.023 here; 60 mixed groups: 0.022 against 0.023; 200 subjects with
skewed classes: 0.005 against 0.025), and switching would move every existing user's split, and with it
the data fingerprint that identifies cached teachers. Both keep every group whole.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import DataError

SPLIT_NAMES = ("train", "val", "test")


def _check_fractions(val_fraction: float, test_fraction: float) -> np.ndarray:
    """The target shares (train, val, test) of the fractions, after checking they are usable."""
    for key, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (np.isfinite(f) and 0.0 <= f < 1.0):
            raise DataError(f"data.{key} must lie in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"data.val_fraction + data.test_fraction must stay below 1 to leave training data, "
            f"got {val_fraction} + {test_fraction}"
        )
    return np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])


def _split_per_class(labels: np.ndarray, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per sample, cutting each class in the target shares.

    Counts are rounded on the running total over classes, so the split sizes match the fractions
    overall even when every class is small; each class keeps at least one training sample.
    """
    out = np.zeros(len(labels), dtype=np.int64)
    cum_target = np.zeros(3)
    cum_given = np.zeros(3, dtype=np.int64)
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        cum_target += shares * n
        counts = np.zeros(3, dtype=np.int64)
        for j in (1, 2):
            counts[j] = max(0, int(np.floor(cum_target[j] + 0.5)) - cum_given[j])
        while counts[1] + counts[2] > n - 1 and counts[1] + counts[2] > 0:
            counts[1 if counts[1] >= counts[2] else 2] -= 1
        cum_given += counts
        n_val, n_test = int(counts[1]), int(counts[2])
        out[idx[:n_val]] = 1
        out[idx[n_val : n_val + n_test]] = 2
    return out


def _split_groups(
    labels: np.ndarray, group_index: np.ndarray, n_groups: int, shares: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per group, assigning whole groups greedily by class share."""
    classes, y = np.unique(labels, return_inverse=True)
    counts = np.zeros((n_groups, len(classes)), dtype=np.float64)  # samples of each class per group
    np.add.at(counts, (group_index, y), 1.0)
    totals = counts.sum(axis=0)
    active = np.flatnonzero(shares > 0)

    assign = np.full(n_groups, -1, dtype=np.int64)
    have = np.zeros((3, len(classes)))  # samples of each class placed in each split so far
    for g in rng.permutation(n_groups):
        weight = counts[g] / counts[g].sum()  # the group's class composition
        # How far each split's share of these classes lies below its target share.
        deficit = [(weight * (shares[j] - have[j] / totals)).sum() for j in active]
        j = int(active[int(np.argmax(deficit))])
        assign[g] = j
        have[j] += counts[g]

    # A split that should exist but got nothing takes the smallest group of the most crowded split.
    sizes = counts.sum(axis=1)
    for j in active:
        if (assign == j).any():
            continue
        n_in = np.bincount(assign, minlength=3)
        donors = [d for d in active if n_in[d] > 1]
        if not donors:
            break
        excess = {d: have[d].sum() / totals.sum() - shares[d] for d in donors}
        d = max(donors, key=lambda s: excess[s])
        members = np.flatnonzero(assign == d)
        g = int(members[np.argmin(sizes[members])])
        assign[g] = j
        have[d] -= counts[g]
        have[j] += counts[g]

    # Every class needs a training sample: move in the smallest group that brings it, if that
    # leaves its own split non-empty.
    for k in range(len(classes)):
        if have[0, k] > 0:
            continue
        n_in = np.bincount(assign, minlength=3)
        candidates = [g for g in np.flatnonzero(counts[:, k] > 0) if n_in[assign[g]] > 1]
        if not candidates:
            continue
        g = int(min(candidates, key=lambda c: (sizes[c], c)))
        have[assign[g]] -= counts[g]
        assign[g] = 0
        have[0] += counts[g]
    return assign


def make_split(
    labels: np.ndarray,
    groups: Optional[np.ndarray],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> np.ndarray:
    """A str array of 'train'/'val'/'test' per sample: stratified by label, whole groups per split.

    The fractions are shares of the samples (approximately, when whole groups are assigned); a zero
    fraction gives no such split. The same inputs and seed always give the same split.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"labels for a split must be one value per sample, got shape {labels.shape}")
    shares = _check_fractions(float(val_fraction), float(test_fraction))
    rng = np.random.default_rng(int(seed))
    n = len(labels)
    if n == 0:
        return np.array([], dtype="<U5")

    if groups is None:
        index = _split_per_class(labels, shares, rng)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise DataError(f"groups for a split must have one value per sample ({n}), got shape {groups.shape}")
        uniq, group_index = np.unique(groups, return_inverse=True)
        group_index = group_index.reshape(-1)
        if len(uniq) == n:  # every sample is its own group: a plain stratified split
            index = _split_per_class(labels, shares, rng)
        else:
            index = _split_groups(labels, group_index, len(uniq), shares, rng)[group_index]
    return np.asarray(SPLIT_NAMES, dtype="<U5")[index]
