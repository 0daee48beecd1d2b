"""Image folders: the book's layout written from IDX and read back through PIL gives the same tensors."""

import pytest
import torch
from PIL import Image

from digitlab.data import load_folder, mnist_sample
from digitlab.data.folders import export_dataset
from digitlab.errors import DataError


@pytest.mark.slow
def test_export_writes_the_books_counts_and_reads_back_identically(tmp_path):
    counts = export_dataset(tmp_path, "3v7")
    assert counts == {"train": {3: 6131, 7: 6265}, "valid": {3: 1010, 7: 1028}}
    assert len(list((tmp_path / "valid" / "7").glob("*.png"))) == 1028
    with Image.open(next((tmp_path / "train" / "3").glob("*.png"))) as im:
        assert im.size == (28, 28) and im.mode == "L"
    sample = mnist_sample()
    for split in ("train", "valid"):
        folder, warnings = load_folder(tmp_path / split)
        assert warnings == []
        assert torch.equal(folder.images, sample[split].images)
        assert torch.equal(folder.labels, sample[split].labels)


def make_folder(root, per_label=3, labels=(3, 7)):
    for label in labels:
        (root / str(label)).mkdir(parents=True)
        for i in range(per_label):
            Image.new("L", (28, 28), color=i * 40).save(root / str(label) / f"{i}.png")
    return root


def test_non_image_file_is_an_error_or_a_counted_warning(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "3" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"notes.txt: not a readable image.*--skip-bad"):
        load_folder(root)
    split, warnings = load_folder(root, skip_bad=True)
    assert len(split) == 6 and len(warnings) == 1 and "notes.txt" in warnings[0]


def test_wrong_image_size(tmp_path):
    root = make_folder(tmp_path / "f")
    Image.new("L", (32, 30)).save(root / "7" / "big.png")
    with pytest.raises(DataError, match="big.png: image is 32x30, expected 28x28"):
        load_folder(root)


def test_empty_class_folder(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "5").mkdir()
    with pytest.raises(DataError, match="5: empty class folder"):
        load_folder(root)


def test_bad_label_folder_and_missing_folder(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "cats").mkdir()
    with pytest.raises(DataError, match="label folder names must be digits"):
        load_folder(root)
    with pytest.raises(DataError, match="no such folder"):
        load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no label folders"):
        load_folder(tmp_path / "empty")
