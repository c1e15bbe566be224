import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from traindeep import data


def test_digits_splits_are_standardized_and_disjoint():
    d = data.digits()
    assert (len(d.X_train), len(d.X_val), len(d.X_test)) == (1079, 359, 359)
    assert d.num_features == 64 and d.num_classes == 10
    assert d.X_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    informative = d.X_train.std(dim=0) > 0.5
    assert torch.allclose(d.X_train.mean(dim=0), torch.zeros(64), atol=1e-4)
    assert torch.allclose(d.X_train.std(dim=0)[informative], torch.ones(int(informative.sum())), atol=0.01)
    rows = {tuple(r) for r in d.X_train.numpy().round(4)}
    assert not any(tuple(r) in rows for r in d.X_test.numpy().round(4)[:50])


def test_digits_is_deterministic_and_seeded():
    a, b, c = data.digits(seed=0), data.digits(seed=0), data.digits(seed=1)
    assert torch.equal(a.X_train, b.X_train)
    assert not torch.equal(a.X_train, c.X_train)


def test_mnist1d_has_forty_features():
    d = data.mnist1d(num_samples=1000)
    assert d.num_features == 40 and d.num_classes == 10
    assert len(d.X_train) + len(d.X_val) + len(d.X_test) == 1000


def test_make_splits_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to less than 1"):
        data.make_splits("x", np.zeros((10, 2)), np.zeros(10), 0.6, 0.5)


def write_idx(path, array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(">u1").tobytes()))


def make_fake_fashion(folder, n_train=60, n_test=20):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test) % 10,
    }
    for name, array in files.items():
        write_idx(folder / name, np.asarray(array))
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in files}


def test_load_idx_parses_what_it_wrote(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(data.load_idx(tmp_path / "a.gz"), array)


def test_load_idx_rejects_truncated_and_foreign_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.load_idx(tmp_path / "bad")
    header = bytes([0, 0, 8, 1]) + struct.pack(">I", 10)
    (tmp_path / "short").write_bytes(header + b"\x00" * 3)
    with pytest.raises(ValueError, match="holds 3"):
        data.load_idx(tmp_path / "short")


def test_fashion_mnist_downloads_verifies_and_parses(tmp_path, monkeypatch):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    monkeypatch.setattr(data, "FASHION_MNIST_FILES", make_fake_fashion(mirror))
    d = data.fashion_mnist(cache_dir=cache, base_url=mirror.as_uri() + "/")
    assert (len(d.X_train), len(d.X_val), len(d.X_test)) == (50, 10, 20)
    assert d.num_features == 784 and d.num_classes == 10
    assert sorted(p.name for p in cache.iterdir()) == sorted(data.FASHION_MNIST_FILES)
    again = data.fashion_mnist(cache_dir=cache, download=False)  # served from the cache
    assert torch.equal(again.X_test, d.X_test)


def test_fashion_mnist_rejects_a_corrupted_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_FILES", make_fake_fashion(tmp_path))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="checksum mismatch"):
        data.fashion_mnist(cache_dir=tmp_path, download=False)


def test_fashion_mnist_offline_error_is_clear(tmp_path):
    with pytest.raises(ConnectionError, match="offline.*digits"):
        data.fashion_mnist(cache_dir=tmp_path, base_url=(tmp_path / "nowhere").as_uri() + "/")
    assert not list(tmp_path.glob("*.part"))
