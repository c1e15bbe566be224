"""Data sets for the course, all returned as one `Splits` structure.

`digits` and `mnist1d` work offline; `fashion_mnist` downloads (checksum
verified) into a cache and is meant for Colab or longer runs.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Splits:
    """Train/validation/test tensors, standardized with training statistics."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def num_features(self) -> int:
        return self.X_train.shape[1]

    def __repr__(self) -> str:
        return (f"Splits({self.name!r}: train {tuple(self.X_train.shape)}, "
                f"val {tuple(self.X_val.shape)}, test {tuple(self.X_test.shape)}, "
                f"{self.num_classes} classes)")


def make_splits(name, X, y, val_fraction=0.2, test_fraction=0.2, seed=0) -> Splits:
    """Shuffle with a fixed seed, split, and standardize with the training statistics."""
    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    y = np.asarray(y, dtype=np.int64)
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in (0, 1) and sum to less than 1, "
                         f"got {val_fraction} and {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(round(test_fraction * len(X)))
    n_val = int(round(val_fraction * len(X)))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return _standardized(name, X[train], y[train], X[val], y[val], X[test], y[test])


def _standardized(name, X_train, y_train, X_val, y_val, X_test, y_test) -> Splits:
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0) + 1e-6  # constant pixels (digit borders) have std 0

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    def scale(a):
        return tensor(((a - mean) / std).astype(np.float32))

    num_classes = int(max(y_train.max(), y_val.max(), y_test.max())) + 1
    return Splits(name, scale(X_train), tensor(y_train), scale(X_val), tensor(y_val),
                  scale(X_test), tensor(y_test), num_classes)


def digits(val_fraction=0.2, test_fraction=0.2, seed=0) -> Splits:
    """scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 64 features, offline."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return make_splits("digits", bunch.data, bunch.target, val_fraction, test_fraction, seed)


def mnist1d(num_samples=4000, val_fraction=0.2, test_fraction=0.2, seed=0) -> Splits:
    """MNIST-1D: 40-feature 1-D signals generated procedurally (no download)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    data = make_dataset(args)
    X = np.concatenate([data["x"], data["x_test"]])
    y = np.concatenate([data["y"], data["y_test"]])
    return make_splits("mnist1d", X, y, val_fraction, test_fraction, seed)


# Fashion-MNIST (Xiao et al., 2017): file name -> MD5 of the gzip file.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def default_cache_dir() -> Path:
    return Path(os.environ.get("TRAINDEEP_CACHE", Path.home() / ".cache" / "traindeep"))


def fashion_mnist(cache_dir=None, download=True, base_url=FASHION_MNIST_URL,
                  val_fraction=1 / 6, seed=0) -> Splits:
    """Fashion-MNIST (60k train, 10k test, 28x28), downloaded once into a cache.

    The validation set is a seeded slice of the official training set; the
    official test set stays the test set.
    """
    folder = Path(cache_dir) if cache_dir else default_cache_dir() / "fashion_mnist"
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for filename, md5 in FASHION_MNIST_FILES.items():
        path = folder / filename
        if not path.exists():
            if not download:
                raise FileNotFoundError(f"{path} is missing and download=False; "
                                        "pass download=True or copy the file there")
            _download(base_url + filename, path)
        if _md5(path) != md5:
            raise ValueError(f"checksum mismatch for {path}: expected MD5 {md5}, got {_md5(path)}; "
                             "delete the file to download it again")
        arrays[filename.split("-idx")[0]] = load_idx(path)
    X_all, y_all = arrays["train-images"], arrays["train-labels"]
    order = np.random.default_rng(seed).permutation(len(X_all))
    n_val = int(round(val_fraction * len(X_all)))
    val, train = order[:n_val], order[n_val:]
    flat = X_all.reshape(len(X_all), -1).astype(np.float32)
    test = arrays["t10k-images"].reshape(len(arrays["t10k-images"]), -1).astype(np.float32)
    return _standardized("fashion_mnist", flat[train], y_all[train].astype(np.int64),
                         flat[val], y_all[val].astype(np.int64),
                         test, arrays["t10k-labels"].astype(np.int64))


def _download(url: str, path: Path) -> None:
    partial = path.with_suffix(path.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            out.write(response.read())
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise ConnectionError(
            f"could not download {url} ({error}). Are you offline? "
            f"Copy the file into {path.parent}, or use traindeep.data.digits() "
            "or mnist1d(), which need no network.") from error
    partial.replace(path)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def load_idx(path) -> np.ndarray:
    """Parse an IDX file (the MNIST format), gzip-compressed or not."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise ValueError(f"{path} is not an IDX file (expected two zero bytes, "
                         f"a type code and a dimension count at the start)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    type_code, ndim = raw[2], raw[3]
    if type_code not in dtypes:
        raise ValueError(f"{path}: unknown IDX type code {type_code:#x}")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[type_code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header promises shape {shape} "
                         f"({int(np.prod(shape))} values) but the file holds {data.size}")
    return data.reshape(shape)
