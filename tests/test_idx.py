"""The IDX reader and writer, on the real MNIST files and on every kind of bad file."""

from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pytest
import torch

from digitlab.data import load_split, parse_idx, read_idx, to_idx_bytes, write_idx
from digitlab.data.mnist import SHIPPED_DATA
from digitlab.errors import ChecksumError, DataError, IdxError


def test_reads_real_mnist_files():
    images = read_idx(SHIPPED_DATA / "train-images-idx3-ubyte.gz", expect_magic=2051)
    labels = read_idx(SHIPPED_DATA / "t10k-labels-idx1-ubyte.gz", expect_magic=2049)
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and int(labels[0]) == 7  # the first test digit is a 7
    assert 0 < images.float().mean() < 255


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_read_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = write_idx(tmp_path / f"a.idx{suffix}", array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back.numpy(), array)


def test_writer_matches_original_mnist_bytes():
    raw = gzip.decompress((SHIPPED_DATA / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert to_idx_bytes(parse_idx(raw)) == raw


def labels_bytes(n=5, magic_type=0x08):
    return bytes([0, 0, magic_type, 1]) + struct.pack(">I", n) + bytes(range(n))


@pytest.mark.parametrize("data, message", [
    (b"", "too short"),
    (b"\x00\x00", "too short"),
    (b"\x12\x34\x08\x01" + b"\x00" * 8, "wrong magic number"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 0]), "wrong magic number"),
    (bytes([0, 0, 8, 3, 0, 0, 0, 1]), "truncated header"),
    (labels_bytes()[:-2], "truncated data"),
    (labels_bytes() + b"xx", "trailing data"),
    (bytes([0, 0, 8, 3]) + struct.pack(">3I", 65535, 65535, 65535), "more than"),
])
def test_bad_bytes_raise_idx_error_naming_the_problem(data, message):
    with pytest.raises(IdxError, match=message) as info:
        parse_idx(data, "some.idx")
    assert "some.idx" in str(info.value)


def test_expected_magic_is_checked(tmp_path):
    path = write_idx(tmp_path / "labels.idx", np.zeros(3, np.uint8))
    with pytest.raises(IdxError, match=r"labels.idx: wrong magic number 2049, expected 2051"):
        read_idx(path, expect_magic=2051)


def test_corrupt_and_truncated_gzip(tmp_path):
    good = (SHIPPED_DATA / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(IdxError, match="cut.gz: the gzip data is corrupt or truncated"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "bad.gz").write_bytes(good[:20] + b"\xff" * 50 + good[70:])
    with pytest.raises(IdxError, match="bad.gz: the gzip data is corrupt"):
        read_idx(tmp_path / "bad.gz")


def test_missing_file_says_where_to_look(tmp_path):
    with pytest.raises(IdxError, match="no such file"):
        read_idx(tmp_path / "nope.idx")


def copy_mnist(dest):
    dest.mkdir()
    for f in SHIPPED_DATA.glob("*.gz"):
        shutil.copy(f, dest / f.name)
    return dest


def test_image_label_count_mismatch(tmp_path, isolated_cache):
    root = copy_mnist(tmp_path / "m")
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(root / "t10k-labels-idx1-ubyte", labels[:9999])  # raw, not gzip: both are accepted
    with pytest.raises(IdxError, match="10000 images but .* 9999 labels: image/label count mismatch"):
        load_split("valid", root, verify=False)


def test_checksum_mismatch_is_caught_before_use(tmp_path, isolated_cache):
    root = copy_mnist(tmp_path / "m")
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    labels[0] = 3  # one changed label: still a valid IDX file, but not the published data
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        load_split("valid", root)
    assert load_split("valid", root, verify=False).labels[0] == 3  # verify=False is the escape hatch


def test_checksum_verified_once_then_cached(tmp_path, isolated_cache):
    root = copy_mnist(tmp_path / "m")
    first = load_split("valid", root)
    assert (isolated_cache / "digitlab" / "verified.json").exists()
    second = load_split("valid", root)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_missing_data_folder_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="--data DIR"):
        load_split("train", tmp_path)


def test_empty_array_with_huge_other_dimensions_is_refused():
    """Found by hypothesis: a zero dimension beside huge ones made numpy's reshape overflow."""
    data = bytes([0, 0, 8, 4]) + struct.pack(">4I", 0, 16, 758198534, 759252116)
    with pytest.raises(IdxError, match="more than"):
        parse_idx(data, "zero.idx")
