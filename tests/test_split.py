"""make_split: seeded, stratified, group-aware train/val/test splits."""
from __future__ import annotations

import numpy as np
import pytest

from mmhal.data.split import make_split
from mmhal.errors import DataError


def grouped_data(seed: int = 0, n_groups: int = 60, n_classes: int = 4):
    """Samples in groups of uneven size; every group holds several classes (like subjects)."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for g in range(n_groups):
        size = int(rng.integers(20, 80))
        labels.append(rng.integers(0, n_classes, size))
        groups.append(np.full(size, 1000 + g))
    return np.concatenate(labels), np.concatenate(groups)


def test_every_group_lies_wholly_in_one_split():
    labels, groups = grouped_data()
    split = make_split(labels, groups, 0.2, 0.2, seed=3)
    for g in np.unique(groups):
        assert len(set(split[groups == g].tolist())) == 1, f"group {g} is cut across splits"
    assert set(split.tolist()) == {"train", "val", "test"}


def test_string_groups_are_kept_whole_too():
    labels, groups = grouped_data(n_groups=30)
    names = np.array([f"subject-{g}" for g in groups])
    split = make_split(labels, names, 0.25, 0.25, seed=0)
    for g in np.unique(names):
        assert len(set(split[names == g].tolist())) == 1


def test_same_seed_gives_same_split_and_other_seeds_differ():
    labels, groups = grouped_data()
    a = make_split(labels, groups, 0.2, 0.2, seed=7)
    b = make_split(labels, groups, 0.2, 0.2, seed=7)
    assert np.array_equal(a, b)
    others = [make_split(labels, groups, 0.2, 0.2, seed=s) for s in (8, 9, 10)]
    assert any(not np.array_equal(a, o) for o in others)

    y = np.repeat(np.arange(3), 50)
    assert np.array_equal(make_split(y, None, 0.2, 0.2, 1), make_split(y, None, 0.2, 0.2, 1))
    assert not np.array_equal(make_split(y, None, 0.2, 0.2, 1), make_split(y, None, 0.2, 0.2, 2))


def test_without_groups_each_class_is_cut_in_the_requested_shares():
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=2000, p=[0.5, 0.3, 0.15, 0.05])
    split = make_split(labels, None, 0.2, 0.1, seed=0)
    for k in range(4):
        mask = labels == k
        assert abs((split[mask] == "val").mean() - 0.2) < 0.02, k
        assert abs((split[mask] == "test").mean() - 0.1) < 0.02, k
    assert abs((split == "val").sum() - 400) <= 2
    assert abs((split == "test").sum() - 200) <= 2


def test_with_groups_split_sizes_and_class_shares_are_roughly_right():
    labels, groups = grouped_data(n_groups=100)
    split = make_split(labels, groups, 0.2, 0.2, seed=1)
    for s, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        assert abs((split == s).mean() - share) < 0.05, s
        for k in range(4):
            assert abs((split[labels == k] == s).mean() - share) < 0.07, (s, k)


def test_group_split_balances_class_proportions_for_class_specific_groups():
    # Half the groups hold only class 0, half only class 1: a split must take both kinds.
    labels = np.repeat([0, 1] * 20, 10)
    groups = np.repeat(np.arange(40), 10)
    split = make_split(labels, groups, 0.2, 0.2, seed=0)
    for s in ("train", "val", "test"):
        counts = np.bincount(labels[split == s], minlength=2)
        assert counts.min() > 0 and abs(counts[0] - counts[1]) <= 10, (s, counts)


def test_every_class_has_a_train_sample_even_when_rare():
    # Without groups: a class with a single sample stays in train.
    labels = np.array([0] * 50 + [1] * 50 + [2])
    for seed in range(20):
        split = make_split(labels, None, 0.3, 0.3, seed=seed)
        assert (labels[split == "train"] == 2).any()
    # With groups: the only group holding class 2 goes to train, whatever the seed.
    labels, groups = grouped_data(n_groups=20, n_classes=2)
    labels = labels.copy()
    labels[groups == 1005] = 2
    for seed in range(20):
        split = make_split(labels, groups, 0.3, 0.3, seed=seed)
        for k in range(3):
            assert (labels[split == "train"] == k).any(), (seed, k)


def test_test_fraction_zero_gives_no_test_split():
    labels, groups = grouped_data()
    assert "test" not in set(make_split(labels, groups, 0.25, 0.0, seed=0).tolist())
    assert "test" not in set(make_split(labels, None, 0.25, 0.0, seed=0).tolist())


def test_each_requested_split_gets_a_group_when_there_are_few_groups():
    labels = np.tile([0, 1], 150)
    groups = np.repeat([1, 2, 3], 100)
    for seed in range(10):
        split = make_split(labels, groups, 0.2, 0.2, seed=seed)
        assert set(split.tolist()) == {"train", "val", "test"}


def test_bad_fractions_and_group_lengths_raise_data_error():
    y = np.zeros(10, dtype=int)
    with pytest.raises(DataError, match="val_fraction"):
        make_split(y, None, -0.1, 0.2, 0)
    with pytest.raises(DataError, match="below 1"):
        make_split(y, None, 0.6, 0.5, 0)
    with pytest.raises(DataError, match="groups"):
        make_split(y, np.arange(9), 0.2, 0.2, 0)


def test_the_split_of_a_given_input_and_seed_stays_what_it_was():
    # Pinned on purpose: a split decides which teacher the cache reuses (the data fingerprint) and which samples
    # a user's earlier figures were tested on; changing the algorithm (e.g. to scikit-learn's
    # StratifiedGroupKFold) changes both, and must be a deliberate, announced change that updates these strings.
    code = {"train": "r", "val": "a", "test": "e"}
    y, groups = np.tile([0, 1, 2], 8), np.repeat(np.arange(8), 3)
    split = make_split(y, groups, 0.25, 0.25, seed=0)
    assert "".join(code[s] for s in split[::3]) == "rarrreae"  # one letter per group of 3
    split = make_split(np.repeat([0, 1, 2], 6), None, 0.2, 0.2, seed=0)
    assert "".join(code[s] for s in split) == "rrearrrrrraeeraare"
