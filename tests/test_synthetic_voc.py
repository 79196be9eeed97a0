"""The generated VOC-layout data: determinism, layout, and what the scenes contain."""

import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from atto_detectron.data import VOC_CLASS_NAMES, voc_palette
from atto_detectron.synthetic import SYNTHETIC_CLASSES, render_sample
from atto_detectron.synthetic.voc import write_sbd_sample

from .helpers import SYNTH_SIZES


@pytest.fixture(scope="module")
def samples():
    return [render_sample(0, "val", i) for i in range(40)]


def test_same_seed_same_sample_and_other_seeds_differ():
    a, b = render_sample(3, "train", 5), render_sample(3, "train", 5)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.instances, b.instances)
    assert not np.array_equal(render_sample(4, "train", 5).image, a.image)
    assert not np.array_equal(render_sample(3, "val", 5).image, a.image)


def test_written_layout_is_vocdevkit(synthetic_voc):
    lists = {}
    for split in ("train", "val", "trainval"):
        with open(os.path.join(synthetic_voc, "ImageSets", "Segmentation", f"{split}.txt")) as f:
            lists[split] = f.read().split()
    assert [len(lists[s]) for s in ("train", "val")] == [SYNTH_SIZES["train"], SYNTH_SIZES["val"]]
    assert lists["trainval"] == lists["train"] + lists["val"]
    assert not set(lists["train"]) & set(lists["val"])
    palette = voc_palette().flatten().tolist()
    for name in lists["trainval"]:
        image = Image.open(os.path.join(synthetic_voc, "JPEGImages", name + ".jpg"))
        assert image.format == "JPEG" and image.mode == "RGB"
        for folder in ("SegmentationObject", "SegmentationClass"):
            png = Image.open(os.path.join(synthetic_voc, folder, name + ".png"))
            assert png.mode == "P" and png.getpalette()[: len(palette)] == palette
            assert png.size == image.size
        root = ET.parse(os.path.join(synthetic_voc, "Annotations", name + ".xml")).getroot()
        assert root.findtext("filename") == name + ".jpg"
        assert int(root.findtext("size/width")) == image.width
        instances = np.asarray(
            Image.open(os.path.join(synthetic_voc, "SegmentationObject", name + ".png"))
        )
        ids = set(np.unique(instances)) - {0, 255}
        assert ids == set(range(1, len(root.findall("object")) + 1))


def test_scenes_have_what_voc_scenes_have(samples):
    objects = [obj for sample in samples for obj in sample.objects]
    assert {obj.class_name for obj in objects} == set(SYNTHETIC_CLASSES)
    assert any(not sample.objects for sample in samples)  # images with nothing to find
    assert any(obj.truncated for obj in objects)  # cut by the image border
    assert any(obj.mask.sum() < 100 for obj in objects)  # tiny
    assert any(obj.mask.sum() > 5000 for obj in objects)  # large
    # Occluded: part of the silhouette is hidden by something drawn later.
    assert sum((obj.silhouette & ~obj.visible).sum() > 20 for obj in objects) > 5
    assert any(obj.difficult for obj in objects) and not all(obj.difficult for obj in objects)


def test_every_outline_is_void(samples):
    # A pixel next to an instance is the same instance or void: the band separates
    # every instance from background and from other instances, as in VOC.
    for sample in samples:
        labels = sample.instances.astype(int)
        for dy, dx in ((0, 1), (1, 0)):
            a = labels[: labels.shape[0] - dy, : labels.shape[1] - dx]
            b = labels[dy:, dx:]
            change = a != b
            assert np.all((a[change] == 255) | (b[change] == 255))
        for k, obj in enumerate(sample.objects, start=1):
            np.testing.assert_array_equal(sample.instances == k, obj.mask)
            expected = VOC_CLASS_NAMES.index(obj.class_name) + 1
            assert np.all(sample.classes[obj.mask] == expected)


def test_tool_writes_a_dataset(tmp_path, capsys):
    from atto_detectron.tools import make_synthetic_voc as tool

    tool.main(["--out", str(tmp_path / "VOCsynth"), "--train", "3", "--val", "2", "--workers", "0"])
    root = tmp_path / "VOCsynth" / "VOC2012"
    assert (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split() == [
        "val_000000",
        "val_000001",
    ]
    assert len(list((root / "JPEGImages").iterdir())) == 5
    assert "Wrote 3 train + 0 holdout + 2 val images" in capsys.readouterr().out
    assert not (root / "ImageSets" / "Segmentation" / "holdout.txt").exists()
    generator = json.loads((root / "generator.json").read_text())
    assert generator["num_train"] == 3 and generator["num_val"] == 2 and generator["seed"] == 0


def test_a_holdout_split_continues_the_training_stream_and_leaves_train_as_it_was(tmp_path):
    from atto_detectron.tools import make_synthetic_voc as tool

    common = ["--train", "3", "--val", "2", "--workers", "0"]
    tool.main(["--out", str(tmp_path / "plain"), *common])
    tool.main(["--out", str(tmp_path / "tuned"), *common, "--holdout", "2"])
    plain, tuned = (tmp_path / name / "VOC2012" for name in ("plain", "tuned"))
    lists = tuned / "ImageSets" / "Segmentation"
    assert (lists / "holdout.txt").read_text().split() == ["train_000003", "train_000004"]
    for split in ("train", "val", "trainval"):
        assert (lists / f"{split}.txt").read_text() == (
            plain / "ImageSets" / "Segmentation" / f"{split}.txt"
        ).read_text()
    for name in ("train_000002", "val_000001"):  # the same images as without a holdout
        assert (tuned / "JPEGImages" / f"{name}.jpg").read_bytes() == (
            plain / "JPEGImages" / f"{name}.jpg"
        ).read_bytes()
    assert json.loads((tuned / "generator.json").read_text())["num_holdout"] == 2


def test_sbd_files_are_structs_as_sbd_stores_them(tmp_path):
    from scipy.io import loadmat

    sample = next(
        s for s in (render_sample(0, "train", i) for i in range(10)) if len(s.objects) > 1
    )
    write_sbd_sample(str(tmp_path), sample)
    h, w = sample.instances.shape
    categories = [VOC_CLASS_NAMES.index(obj.class_name) + 1 for obj in sample.objects]

    # What readers of the real files index: loadmat(path)["GTinst"][0, 0]["Segmentation"].
    inst = loadmat(str(tmp_path / "inst" / f"{sample.name}.mat"))["GTinst"]
    assert inst.shape == (1, 1)
    assert inst.dtype.names == ("Segmentation", "Boundaries", "Categories")
    segmentation = inst[0, 0]["Segmentation"]
    assert segmentation.dtype == np.uint8 and segmentation.shape == (h, w)
    assert inst[0, 0]["Categories"].tolist() == [[c] for c in categories]
    boundaries = inst[0, 0]["Boundaries"]
    assert boundaries.shape == (len(categories), 1)
    for k, obj in enumerate(sample.objects, start=1):
        # No void band: an object is all of its visible pixels; its outline lies on it.
        np.testing.assert_array_equal(segmentation == k, obj.visible)
        outline = boundaries[k - 1, 0].toarray().astype(bool)
        assert outline.shape == (h, w) and outline.any() and not (outline & ~obj.visible).any()
    assert set(np.unique(segmentation)) == set(range(len(categories) + 1))

    cls = loadmat(str(tmp_path / "cls" / f"{sample.name}.mat"))["GTcls"]
    assert cls.shape == (1, 1)
    assert cls.dtype.names == ("Segmentation", "Boundaries", "CategoriesPresent")
    classes = cls[0, 0]["Segmentation"]
    assert classes.dtype == np.uint8 and classes.shape == (h, w)
    for k, category in enumerate(categories, start=1):
        assert np.all(classes[segmentation == k] == category)
    assert np.all(classes[segmentation == 0] == 0)
    assert cls[0, 0]["Boundaries"].shape == (len(VOC_CLASS_NAMES), 1)
    assert cls[0, 0]["CategoriesPresent"].ravel().tolist() == sorted(set(categories))


def test_ensure_writes_missing_data_once_and_never_overwrites_other_data(tmp_path):
    from atto_detectron.synthetic.voc import ensure_synthetic_voc

    arguments = {"num_train": 2, "num_val": 1, "workers": 0}
    root = ensure_synthetic_voc(str(tmp_path / "a"), **arguments)
    jpeg = os.path.join(root, "JPEGImages", "train_000000.jpg")
    written = os.path.getmtime(jpeg)
    assert ensure_synthetic_voc(str(tmp_path / "a"), **arguments) == root
    assert os.path.getmtime(jpeg) == written  # complete: not written again
    with pytest.raises(ValueError, match=r"other arguments.*num_val.*\(1, 3\).*move it away"):
        ensure_synthetic_voc(str(tmp_path / "a"), num_train=2, num_val=3, workers=0)
    assert os.path.getmtime(jpeg) == written
