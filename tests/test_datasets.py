"""Datasets: the bundled sets, user CSV/NPZ files and their errors, the seeded split,
standardization and sharding (serial)."""

from __future__ import annotations

import numpy as np
import pytest

from distbench.algorithms.sgd.datasets import load_dataset, shard_bounds, shard_indices
from distbench.errors import UsageError


def test_digits_split_standardized_and_seeded():
    ds = load_dataset("digits", seed=0)
    assert (ds.n_train, ds.X_test.shape[0], ds.n_features, ds.n_classes) == (1438, 359, 64, 10)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0, atol=1e-12)
    std = ds.X_train.std(axis=0)
    assert np.all((np.abs(std - 1) < 1e-12) | (std == 0))  # constant pixels stay at 0
    again, other = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    np.testing.assert_array_equal(ds.X_test, again.X_test)
    assert not np.array_equal(ds.y_test, other.y_test)


def test_breast_cancer_is_binary():
    ds = load_dataset("breast_cancer", seed=3)
    assert (ds.n_train + ds.X_test.shape[0], ds.n_features, ds.n_classes) == (569, 30, 2)


def test_csv_with_header_and_arbitrary_labels(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    y = np.where(X[:, 0] > 0, 7, -1)
    path = tmp_path / "mine.csv"
    with open(path, "w") as fh:
        fh.write("a,b,c,label\n")
        np.savetxt(fh, np.column_stack([X, y]), delimiter=",")
    ds = load_dataset(str(path), seed=0)
    assert ds.name == "mine.csv" and ds.n_classes == 2 and ds.n_features == 3
    assert ds.n_train == 40 and set(np.unique(ds.y_train)) <= {0, 1}
    # label 7 (the larger value) maps to class 1: it goes with a positive first feature
    raw = np.concatenate([ds.X_train[:, 0], ds.X_test[:, 0]])
    labels = np.concatenate([ds.y_train, ds.y_test])
    assert np.all((raw > raw[labels == 0].max()) == (labels == 1))


def test_npz_and_headerless_csv_agree(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 4))
    y = rng.integers(0, 3, 30)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", fmt="%.17g")
    a, b = load_dataset(str(tmp_path / "d.npz")), load_dataset(str(tmp_path / "d.csv"))
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_allclose(a.X_train, b.X_train, rtol=1e-14)


@pytest.mark.parametrize("content,needle", [
    ("1,2,0\n3,x,1\n", "not a numeric CSV"),
    ("1,2,0\n3,4\n", "not a numeric CSV"),
    ("1,2,0.5\n3,4,1\n", "labels"),
    ("1,nan,0\n3,4,1\n", "NaN"),
    ("1,2,1\n3,4,1\n", "2 classes"),
    ("5\n6\n", "label column"),
])
def test_malformed_csv_is_a_usage_error(tmp_path, content, needle):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UsageError, match=needle) as info:
        load_dataset(str(path))
    assert "\n" not in str(info.value)


def test_malformed_npz_and_unknown_sources(tmp_path):
    np.savez(tmp_path / "noy.npz", X=np.zeros((4, 2)))
    np.savez(tmp_path / "obj.npz", X=np.array([[1, None]], dtype=object), y=np.zeros(1))
    np.savez(tmp_path / "shape.npz", X=np.zeros(4), y=np.zeros(4))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for name, needle in [("noy.npz", "missing"), ("obj.npz", "readable"),
                         ("shape.npz", "2-D"), ("junk.npz", "readable")]:
        with pytest.raises(UsageError, match=needle):
            load_dataset(str(tmp_path / name))
    with pytest.raises(UsageError, match="does not exist"):
        load_dataset(str(tmp_path / "absent.csv"))
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset("mnist")


@pytest.mark.parametrize("workers", [1, 3, 4, 7])
def test_iid_shards_partition_the_training_set(workers):
    ds = load_dataset("digits")
    shards = [shard_indices(ds.y_train, w, workers) for w in range(workers)]
    joined = np.concatenate(shards)
    np.testing.assert_array_equal(np.sort(joined), np.arange(ds.n_train))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    np.testing.assert_array_equal(np.diff(shard_bounds(ds.n_train, workers)), sizes)


def test_label_shards_are_sorted_and_nearly_disjoint_in_classes():
    ds = load_dataset("digits")
    shards = [shard_indices(ds.y_train, w, 5, "label") for w in range(5)]
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.arange(ds.n_train))
    labels = [ds.y_train[s] for s in shards]
    assert all(np.all(np.diff(lab) >= 0) for lab in labels)
    for a, b in zip(labels[:-1], labels[1:], strict=True):
        assert a.max() <= b.min()  # contiguous label ranges: at most one shared class
    assert all(len(np.unique(lab)) <= 3 for lab in labels)  # 10 classes over 5 workers
    with pytest.raises(UsageError, match="partition"):
        shard_indices(ds.y_train, 0, 2, "dirichlet")
