"""Training data for the SGD benchmark: real, offline, standardized, split and sharded.

Sources:

* scikit-learn's bundled datasets, read from files inside the installed package (never a
  ``fetch_*`` download): ``digits`` (1797 x 64 pixel intensities, 10 classes) and
  ``breast_cancer`` (569 x 30 features, 2 classes);
* a user's file: ``PATH.csv`` (numeric features, integer label in the last column, optional
  header line; comma- or whitespace-separated) or ``PATH.npz`` (arrays ``X`` of shape (n, d)
  and ``y`` of shape (n,)).

Labels are mapped to ``0..C-1`` in sorted order of their values. A seeded permutation puts 20 %
of the samples in the test set; features are standardized with the training set's mean and
standard deviation (constant features keep scale 1). :func:`shard_bounds` splits the training
set across workers: i.i.d. (contiguous blocks of the shuffled order) or by label (samples
sorted by label, contiguous blocks, so each worker sees few classes: the non-i.i.d. split of
McMahan et al. 2017, section 3).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from distbench.collectives.inputs import block_bounds
from distbench.errors import UsageError
from distbench.files import MAX_DATA_BYTES, regular_file

BUILTIN = ("digits", "breast_cancer")
PARTITIONS = ("iid", "label")
TEST_FRACTION = 0.2


@dataclass
class Dataset:
    """A standardized train/test split (host NumPy arrays).

    Attributes:
        name: ``digits``, ``breast_cancer`` or the file's base name.
        X_train: float64, shape (n_train, d), standardized.
        y_train: int64, shape (n_train,), labels in ``0..n_classes-1``.
        X_test, y_test: the held-out 20 %, standardized with the training statistics.
        n_classes: number of distinct labels in the whole file.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])


def _builtin(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets as skd

    loader = {"digits": skd.load_digits, "breast_cancer": skd.load_breast_cancer}[name]
    bunch = loader()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:  # UnicodeDecodeError (a file of random bytes, not UTF-8) is a ValueError
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        delimiter = "," if "," in first else None
        tokens = [t.strip() for t in (first.split(delimiter) if delimiter else first.split())]
        header = 1 if tokens and not all(_is_number(t) for t in tokens if t) else 0
        with warnings.catch_warnings():  # an empty file: the one line below says so
            warnings.simplefilter("error", UserWarning)
            data = np.loadtxt(path, delimiter=delimiter, skiprows=header, ndmin=2,
                              dtype=np.float64, encoding="utf-8")
    except (ValueError, OSError, UserWarning) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unparsable"
        raise UsageError(f"{path}: not a numeric CSV file ({reason})") from None
    if data.shape[1] < 2:
        raise UsageError(f"{path}: needs at least one feature column and a label column, "
                         f"found {data.shape[1]} column(s)")
    return data[:, :-1], data[:, -1]


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("X", "y") if k not in archive.files]
            if missing:
                raise UsageError(f"{path}: missing array(s) {', '.join(missing)} "
                                 f"(found {', '.join(archive.files) or 'none'})")
            X, y = archive["X"], archive["y"]
    except UsageError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(f"{path}: not a readable .npz of numeric arrays ({exc})") from None
    if X.ndim != 2 or y.ndim != 1:
        raise UsageError(f"{path}: X must be 2-D (n, d) and y 1-D (n,), got shapes "
                         f"{X.shape} and {y.shape}")
    if not (np.issubdtype(X.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise UsageError(f"{path}: X and y must be numeric, got {X.dtype} and {y.dtype}")
    return X.astype(np.float64), y


def read_xy(source: str) -> tuple[str, np.ndarray, np.ndarray]:
    """Features and raw labels of ``source`` (a built-in name or a .csv/.npz path).

    Returns ``(name, X, y)``: X float64 of shape (n, d), y of shape (n,) with integer values.

    Raises:
        UsageError: unknown name, missing file, wrong extension, malformed content
            (non-numeric values, NaN/inf, non-integer labels, mismatched lengths, fewer than
            2 samples or 2 classes).
    """
    if source in BUILTIN:
        name = source
        X, y = _builtin(source)
    else:
        ext = os.path.splitext(source)[1].lower()
        if ext not in (".csv", ".npz"):
            raise UsageError(f"unknown dataset {source!r} (choose {', '.join(BUILTIN)}, "
                             "or give a .csv or .npz file)")
        regular_file(source, "dataset file", MAX_DATA_BYTES)  # no FIFO, no device, bounded
        name = os.path.basename(source)
        X, y = _read_csv(source) if ext == ".csv" else _read_npz(source)
    if X.shape[0] != y.shape[0]:
        raise UsageError(f"{source}: X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise UsageError(f"{source}: needs at least 2 samples and 1 feature, got shape "
                         f"{X.shape}")
    if not np.all(np.isfinite(X)):
        raise UsageError(f"{source}: features contain NaN or infinite values")
    yf = y.astype(np.float64)
    if not np.all(np.isfinite(yf)) or not np.array_equal(yf, np.round(yf)):
        raise UsageError(f"{source}: labels (last column) must be integers")
    if np.abs(yf).max() >= 2.0 ** 53:
        raise UsageError(f"{source}: labels (last column) must be integers below 2**53 in "
                         f"magnitude, found {yf[np.argmax(np.abs(yf))]:g}")
    return name, X, y.astype(np.int64)


def load_dataset(source: str, seed: int = 0) -> Dataset:
    """Read ``source``, map labels to ``0..C-1``, split 80/20 with ``seed``, standardize.

    The split is a permutation from ``numpy.random.default_rng(seed)``; the first
    ``round(0.2 n)`` (at least 1) samples of it form the test set. Mean and standard deviation
    are computed on the training part only.

    Raises:
        UsageError: see :func:`read_xy`; also a dataset with a single class.
    """
    name, X, y = read_xy(source)
    classes, labels = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise UsageError(f"{source}: needs at least 2 classes, found {classes.size}")
    n = X.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, int(round(TEST_FRACTION * n))))
    test, train = perm[:n_test], perm[n_test:]
    X_train, X_test = X[train], X[test]
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0
    for part in (X_train, X_test):
        np.subtract(part, mean, out=part)
        np.divide(part, std, out=part)
    return Dataset(name, X_train, labels[train].astype(np.int64), X_test,
                   labels[test].astype(np.int64), int(classes.size))


def shard_order(y_train: np.ndarray, partition: str = "iid") -> np.ndarray:
    """The order of training samples that :func:`shard_bounds` cuts into contiguous shards.

    ``iid``: the training order itself (already a seeded random permutation of the file).
    ``label``: a stable sort by label, so shard ``w`` holds a contiguous range of classes.

    Raises:
        UsageError: unknown partition.
    """
    if partition == "iid":
        return np.arange(y_train.shape[0], dtype=np.int64)
    if partition == "label":
        return np.argsort(y_train, kind="stable").astype(np.int64)
    raise UsageError(f"unknown partition {partition!r} (choose {', '.join(PARTITIONS)})")


def shard_bounds(n_train: int, workers: int) -> np.ndarray:
    """Offsets of ``workers`` near-equal contiguous shards of ``n_train`` samples
    (int64, length ``workers + 1``; sizes differ by at most one)."""
    return block_bounds(n_train, workers)


def shard_indices(y_train: np.ndarray, worker: int, workers: int,
                  partition: str = "iid") -> np.ndarray:
    """Training-set row indices (int64) held by ``worker`` of ``workers``.

    Raises:
        UsageError: unknown partition; ``worker`` outside ``0..workers-1``.
    """
    if not 0 <= worker < workers:
        raise UsageError(f"worker {worker} outside 0..{workers - 1}")
    order = shard_order(y_train, partition)
    b = shard_bounds(y_train.shape[0], workers)
    return order[b[worker]:b[worker + 1]]
