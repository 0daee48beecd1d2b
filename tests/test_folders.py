"""Image folders: the book's export read back identically; ImageFolder's layout with any class names, any size and
colour; the decoded cache; and a one-line error naming the file or folder for each kind of bad input."""


import pytest
import torch
from PIL import Image

from digitlab.data import load_folder, load_mnist
from digitlab.data.folders import export_dataset, load_image_folders
from digitlab.data.tasks import load_task, to_classes
from digitlab.errors import ConfigError, DataError


@pytest.mark.slow
def test_export_writes_the_books_counts_and_reads_back_identically(tmp_path):
    counts = export_dataset(tmp_path, "3v7")
    assert counts == {"train": {3: 6131, 7: 6265}, "valid": {3: 1010, 7: 1028}}
    assert len(list((tmp_path / "valid" / "7").glob("*.png"))) == 1028
    with Image.open(next((tmp_path / "train" / "3").glob("*.png"))) as im:
        assert im.size == (28, 28) and im.mode == "L"
    mnist = load_mnist()
    for split in ("train", "valid"):
        folder, warnings = load_folder(tmp_path / split)
        assert warnings == []
        in_file_order = to_classes(mnist[split], (3, 7))  # the 3s and 7s as the IDX file orders them
        assert torch.equal(folder.images, in_file_order.images)
        assert torch.equal(folder.labels, in_file_order.labels)  # labels index the sorted class names


def make_folder(root, per_label=3, labels=(3, 7), size=(28, 28), mode="L"):
    for label in labels:
        (root / str(label)).mkdir(parents=True)
        for i in range(per_label):
            colour = i * 40 if mode == "L" else (i * 40, 10, 200)
            Image.new(mode, size, color=colour).save(root / str(label) / f"{i}.png")
    return root


def make_dataset(root, classes=("bag", "cat", "dog"), per_class=4, valid=True):
    for split in ("train", "valid") if valid else ("train",):
        make_folder(root / split, per_class, classes)
    return root


def test_any_class_names_sorted_as_imagefolder_sorts_them(tmp_path, isolated_cache):
    root = make_dataset(tmp_path / "pets", classes=("dog", "Cat", "bird"))
    data = load_task("digits", root)
    assert data.classes == ("Cat", "bird", "dog")  # sorted by name, upper case first, as sorted() and ImageFolder
    assert data.info["name"] == "image folders" and len(data.info["sha256"]) == 64
    assert data.test is not None and len(data.test) == 12  # valid/ is scored once, as the IDX test files
    digits = load_task("digits", make_dataset(tmp_path / "d", classes=("0", "1", "2")))
    assert digits.classes == (0, 1, 2)  # digit folders (the book's export) keep ints, as MNIST's classes


def test_colour_jpeg_webp_and_mixed_sizes_are_made_grey_28x28(tmp_path, isolated_cache):
    root = make_dataset(tmp_path / "ds", classes=("a", "b"))
    Image.new("RGB", (64, 40), (250, 0, 0)).save(root / "train" / "a" / "big.jpg")
    Image.new("RGB", (10, 12), (0, 250, 0)).save(root / "train" / "b" / "small.webp")
    data = load_image_folders(root)
    assert data.splits["train"].images.shape == (10, 28, 28) and data.splits["train"].images.dtype == torch.uint8


def test_a_single_folder_is_split_by_a_seeded_valid_pct(tmp_path, isolated_cache):
    root = make_folder(tmp_path / "one", per_label=10, labels=("x", "y"))
    a, b = load_task("digits", root, valid_pct=0.25), load_task("digits", root, valid_pct=0.25)
    assert (len(a.train), len(a.valid), a.test) == (15, 5, None)
    assert torch.equal(a.valid.images, b.valid.images) and torch.equal(a.valid.labels, b.valid.labels)
    assert len(load_task("digits", root).valid) == 4  # default 0.2
    with pytest.raises(ConfigError, match="drop --valid-pct"):
        load_task("digits", make_dataset(tmp_path / "tv"), valid_pct=0.2)


def test_decoded_once_then_loaded_from_the_cache_until_the_folder_changes(tmp_path, isolated_cache):
    root = make_dataset(tmp_path / "ds", per_class=20)
    first = load_image_folders(root)
    second = load_image_folders(root)
    assert second.cached and not first.cached  # read from the cache, not decoded again (no time bar: see conftest)
    assert torch.equal(first.splits["train"].images, second.splits["train"].images)
    Image.new("L", (28, 28), 99).save(root / "train" / "cat" / "new.png")
    third = load_image_folders(root)
    assert not third.cached and len(third.splits["train"]) == len(first.splits["train"]) + 1


def test_an_unreadable_image_among_good_ones_is_skipped_with_a_count(tmp_path, isolated_cache, capsys):
    root = make_dataset(tmp_path / "ds")
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png at all")
    (root / "train" / "cat" / "notes.txt").write_text("not an image, and not named like one: ignored")
    data = load_image_folders(root)
    assert len(data.splits["train"]) == 12 and len(data.skipped) == 1
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image(s)" in err and "broken.png" in err and len(err.strip().splitlines()) == 1


def test_bad_folders_are_one_line_errors_naming_the_folder(tmp_path, isolated_cache):
    root = make_dataset(tmp_path / "empty")
    (root / "train" / "eel").mkdir()
    with pytest.raises(DataError, match=r"train/eel: empty class folder"):
        load_image_folders(root)
    single = make_folder(tmp_path / "single", labels=("only",))
    with pytest.raises(DataError, match="a single class folder .only.; a classifier needs at least two"):
        load_image_folders(single)
    missing = make_dataset(tmp_path / "missing")
    make_folder(missing / "valid", labels=("fox",))
    with pytest.raises(DataError, match=r"valid/fox: class 'fox' is in valid/ but not in train/"):
        load_image_folders(missing)
    bad = make_dataset(tmp_path / "bad")
    for f in (bad / "train" / "dog").iterdir():
        f.write_bytes(b"junk")
    with pytest.raises(DataError, match=r"train/dog: empty class folder \(none of its images could be read\)"):
        load_image_folders(bad)
    with pytest.raises(DataError, match="no such folder"):
        load_image_folders(tmp_path / "nowhere")
    for err in ("empty", "single"):
        assert "\n" not in str(pytest.raises(DataError, load_image_folders, tmp_path / err).value)


def test_load_folder_skips_or_refuses_unreadable_images(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "3" / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match=r"bad.png.*not a readable image.*skip_bad"):
        load_folder(root)
    split, warnings = load_folder(root, skip_bad=True)
    assert len(split) == 6 and len(warnings) == 1 and "bad.png" in warnings[0]


def test_load_folder_resizes_and_takes_any_names(tmp_path):
    root = make_folder(tmp_path / "f", labels=("cats", "dogs"), size=(32, 30), mode="RGB")
    split, _ = load_folder(root)
    assert split.images.shape == (6, 28, 28) and split.labels.tolist() == [0, 1, 0, 1, 0, 1]  # file-name order
    with pytest.raises(DataError, match="no such folder"):
        load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no label folders"):
        load_folder(tmp_path / "empty")
