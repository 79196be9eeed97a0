"""The VOC instance segmentation loader, on generated data in the VOCdevkit layout."""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image
from scipy.io import loadmat, savemat

from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

from atto_detectron.data import (
    VOC_CLASS_NAMES,
    VOC_VOID,
    VOCDataError,
    load_voc_instances,
    register_voc_instances,
    voc_files,
    voc_palette,
    voc_split_names,
)
from atto_detectron.synthetic import render_sample, write_synthetic_sbd, write_synthetic_voc

from .helpers import REPO_ROOT, SYNTH_DATASETS, SYNTH_LONG_SIDE, SYNTH_SEED, SYNTH_SIZES


@pytest.fixture
def voc_copy(synthetic_voc, tmp_path):
    """A private copy of the generated VOC2012 folder, free to break."""
    root = str(tmp_path / "VOC2012")
    shutil.copytree(synthetic_voc, root)
    return root


@pytest.fixture
def registered(request):
    """Registers datasets for one test and removes them after it."""
    names = []

    def register(name, *args, **kwargs):
        register_voc_instances(name, *args, **kwargs)
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _decode(annotation):
    return mask_util.decode(annotation["segmentation"]).astype(bool)


def _png(path):
    return np.asarray(Image.open(path))


# ---------------------------------------------------------------------------------------
# Records against what the generator drew


@pytest.mark.parametrize("split", ["train", "val"])
def test_records_match_the_drawn_objects(synthetic_voc, split):
    records = load_voc_instances(synthetic_voc, split)
    assert [r["image_id"] for r in records] == list(range(SYNTH_SIZES[split]))
    for index, record in enumerate(records):
        sample = render_sample(SYNTH_SEED, split, index, SYNTH_LONG_SIDE)
        assert record["image_name"] == sample.name
        assert record["file_name"] == os.path.join(
            synthetic_voc, "JPEGImages", sample.name + ".jpg"
        )
        assert (record["height"], record["width"]) == sample.image.shape[:2]
        annotations = record["annotations"]
        assert len(annotations) == len(sample.objects)
        for annotation, obj in zip(annotations, sample.objects):
            assert VOC_CLASS_NAMES[annotation["category_id"]] == obj.class_name
            # RLE round trip through pycocotools: exactly the drawn pixels.
            mask = _decode(annotation)
            np.testing.assert_array_equal(mask, obj.mask)
            assert mask_util.area(annotation["segmentation"]) == obj.mask.sum()
            ys, xs = np.nonzero(obj.mask)
            expected_box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert annotation["bbox"] == [float(v) for v in expected_box]
            assert annotation["bbox_mode"] == BoxMode.XYWH_ABS
            assert annotation["iscrowd"] == 0
            assert annotation["difficult"] == obj.difficult
            assert annotation["truncated"] == obj.truncated


def test_void_band_is_in_no_instance(synthetic_voc):
    records = load_voc_instances(synthetic_voc, "train")
    void_pixels = 0
    for record in records:
        name = record["image_name"]
        instances = _png(os.path.join(synthetic_voc, "SegmentationObject", name + ".png"))
        classes = _png(os.path.join(synthetic_voc, "SegmentationClass", name + ".png"))
        void = instances == 255
        np.testing.assert_array_equal(void, classes == 255)
        void_pixels += void.sum()
        covered = np.zeros(void.shape, int)
        for annotation in record["annotations"]:
            covered += _decode(annotation)
        assert covered.max(initial=0) <= 1  # instances do not overlap
        assert not (covered.astype(bool) & void).any()
        # Everything labelled 1..N is in exactly one mask; 255 and 0 in none.
        np.testing.assert_array_equal(covered.astype(bool), (instances != 0) & ~void)
    assert void_pixels > 0


def test_metadata_has_the_20_classes_and_palette(synthetic_voc):
    metadata = MetadataCatalog.get(SYNTH_DATASETS["val"])
    assert metadata.thing_classes[0] == "aeroplane" and metadata.thing_classes[-1] == "tvmonitor"
    assert tuple(metadata.thing_classes) == VOC_CLASS_NAMES and len(VOC_CLASS_NAMES) == 20
    assert metadata.thing_colors[14] == [192, 128, 128]  # person
    assert metadata.thing_colors == voc_palette()[1:21].tolist()
    # The label files carry the same palette.
    name = voc_split_names(synthetic_voc, "val")[0]
    png = Image.open(os.path.join(synthetic_voc, "SegmentationClass", name + ".png"))
    assert png.mode == "P"
    assert np.array(png.getpalette()[: 3 * 256]).reshape(256, 3)[255].tolist() == [224, 224, 192]


def test_images_without_instances_are_kept_for_evaluation_only(voc_copy, registered):
    name = voc_split_names(voc_copy, "train")[0]
    for folder in ("SegmentationObject", "SegmentationClass"):
        path = os.path.join(voc_copy, folder, name + ".png")
        empty = Image.fromarray(np.zeros_like(_png(path)), mode="P")
        empty.putpalette(voc_palette().flatten().tolist())
        empty.save(path)
    dataset = registered("voc_test_empty", voc_copy, "train")
    everything = get_detection_dataset_dicts([dataset], filter_empty=False)
    assert everything[0]["image_name"] == name and everything[0]["annotations"] == []
    for_training = get_detection_dataset_dicts([dataset], filter_empty=True)
    assert name not in [r["image_name"] for r in for_training]
    assert len(for_training) == sum(1 for r in everything if r["annotations"])


def test_a_training_split_of_only_empty_or_void_images_is_named(voc_copy, registered):
    from atto_detectron.config import load_config
    from atto_detectron.data.train_loader import build_resumable_train_loader

    names = voc_split_names(voc_copy, "train")[:2]
    with open(_split_path(voc_copy, "train"), "w") as f:
        f.write("\n".join(names) + "\n")
    for name in names:  # all void: nothing to train on
        for folder in ("SegmentationObject", "SegmentationClass"):
            path = os.path.join(voc_copy, folder, name + ".png")
            void = Image.fromarray(np.full_like(_png(path), VOC_VOID), mode="P")
            void.putpalette(voc_palette().flatten().tolist())
            void.save(path)
    dataset = registered("voc_test_all_void", voc_copy, "train")
    cfg = load_config(
        os.path.join(REPO_ROOT, "configs", "synth", "atto_maskrcnn_synth.yaml"),
        ["DATASETS.TRAIN", f"('{dataset}',)"],
    )
    with pytest.raises(VOCDataError, match="voc_test_all_void: no image has an object"):
        build_resumable_train_loader(cfg, seed=0)


# ---------------------------------------------------------------------------------------
# COCOEvaluator on the cached COCO json


def _evaluate(dataset_name, records, predictions_for, output_dir):
    evaluator = COCOEvaluator(
        dataset_name, tasks=("bbox", "segm"), distributed=False, output_dir=str(output_dir)
    )
    evaluator.reset()
    for record in records:
        inputs = [
            {"image_id": record["image_id"], "height": record["height"], "width": record["width"]}
        ]
        evaluator.process(inputs, [{"instances": predictions_for(record)}])
    return evaluator.evaluate()


def _instances(record, boxes, masks, classes):
    instances = Instances((record["height"], record["width"]))
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.pred_masks = torch.as_tensor(np.array(masks, dtype=bool)).reshape(
        -1, record["height"], record["width"]
    )
    instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
    instances.scores = torch.ones(len(classes))
    return instances


def _ground_truth(record):
    annotations = record["annotations"]
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    return boxes, [_decode(a) for a in annotations], [a["category_id"] for a in annotations]


def test_coco_evaluator_scores_ground_truth_100_and_shuffled_boxes_near_0(synthetic_voc, tmp_path):
    dataset = SYNTH_DATASETS["val"]
    records = DatasetCatalog.get(dataset)
    assert sum(len(r["annotations"]) for r in records) >= 10

    results = _evaluate(dataset, records, lambda r: _instances(r, *_ground_truth(r)), tmp_path)
    for task in ("bbox", "segm"):
        assert results[task]["AP"] == pytest.approx(100.0)
        assert results[task]["AP50"] == pytest.approx(100.0)

    # Every box and mask moved to another object of the data set (classes kept).
    objects = [(r["image_id"], i) for r in records for i in range(len(r["annotations"]))]
    shuffled = dict(zip(objects, np.roll(np.arange(len(objects)), 3)))
    by_image = {r["image_id"]: r for r in records}

    def shuffled_predictions(record):
        boxes, masks, classes = [], [], []
        for i, annotation in enumerate(record["annotations"]):
            other_image, other = objects[shuffled[(record["image_id"], i)]]
            other_annotation = by_image[other_image]["annotations"][other]
            box = BoxMode.convert(other_annotation["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
            mask = np.zeros((record["height"], record["width"]), bool)
            other_mask = _decode(other_annotation)
            h, w = min(mask.shape[0], other_mask.shape[0]), min(mask.shape[1], other_mask.shape[1])
            mask[:h, :w] = other_mask[:h, :w]
            boxes.append(box)
            masks.append(mask)
            classes.append(annotation["category_id"])
        return _instances(record, boxes, masks, classes)

    results = _evaluate(dataset, records, shuffled_predictions, tmp_path)
    assert results["bbox"]["AP"] < 5 and results["segm"]["AP"] < 5


def test_box_shaped_masks_score_low_mask_ap(tmp_path, registered):
    # The data is hard enough that a broken mask head is seen: a model with every box,
    # class and score right but its boxes filled as masks.
    voc_root = write_synthetic_voc(str(tmp_path), num_train=0, num_val=40, seed=1, workers=0)
    dataset = registered("voc_test_box_masks", voc_root, "val", json_cache_dir=str(tmp_path))
    records = DatasetCatalog.get(dataset)

    def box_masks(record):
        boxes, _, classes = _ground_truth(record)
        masks = np.zeros((len(boxes), record["height"], record["width"]), bool)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes):
            mask[int(y0) : int(y1), int(x0) : int(x1)] = True
        return _instances(record, boxes, masks, classes)

    results = _evaluate(dataset, records, box_masks, tmp_path)
    assert results["bbox"]["AP50"] == pytest.approx(100.0)
    assert results["segm"]["AP50"] < 30


def test_coco_json_is_cached_and_follows_changes(voc_copy, registered, tmp_path):
    dataset = registered("voc_test_cache", voc_copy, "val", json_cache_dir=str(tmp_path / "cache"))
    metadata = MetadataCatalog.get(dataset)
    path = metadata.json_file
    with open(path) as f:
        coco = json.load(f)
    records = DatasetCatalog.get(dataset)
    assert [image["id"] for image in coco["images"]] == [r["image_id"] for r in records]
    assert len(coco["annotations"]) == sum(len(r["annotations"]) for r in records)
    assert [c["name"] for c in coco["categories"]] == list(VOC_CLASS_NAMES)

    # Unchanged data: the same file, not rewritten.
    written = os.stat(path).st_mtime_ns
    assert metadata.json_file == path and os.stat(path).st_mtime_ns == written

    # One instance relabelled as background: a new file with one annotation less.
    name = records[0]["image_name"] if records[0]["annotations"] else records[1]["image_name"]
    png_path = os.path.join(voc_copy, "SegmentationObject", name + ".png")
    png = Image.open(png_path)
    labels = np.asarray(png).copy()
    labels[labels == 1] = 0
    changed = Image.fromarray(labels, mode="P")
    changed.putpalette(png.getpalette())
    changed.save(png_path)
    cls_path = os.path.join(voc_copy, "SegmentationClass", name + ".png")
    classes = np.asarray(Image.open(cls_path)).copy()
    classes[(np.asarray(png) == 1)] = 0
    changed_classes = Image.fromarray(classes, mode="P")
    changed_classes.putpalette(png.getpalette())
    changed_classes.save(cls_path)

    new_path = metadata.json_file
    assert new_path != path
    with open(new_path) as f:
        assert len(json.load(f)["annotations"]) == len(coco["annotations"]) - 1


# ---------------------------------------------------------------------------------------
# Registration under $DETECTRON2_DATASETS


@pytest.mark.slow
def test_builtin_datasets_are_registered_lazily_under_detectron2_datasets(synthetic_voc, tmp_path):
    datasets = tmp_path / "datasets"
    shutil.copytree(synthetic_voc, datasets / "VOCsynth" / "VOC2012")
    code = """
import sys
from detectron2.data import DatasetCatalog, MetadataCatalog
import atto_detectron  # registers, reading nothing
for name in ("voc_2012_seg_train", "voc_2012_seg_val", "voc_2012_seg_train_aug",
             "voc_synth_train", "voc_synth_val"):
    print(name, MetadataCatalog.get(name).dirname, MetadataCatalog.get(name).split)
print("records", len(DatasetCatalog.get("voc_synth_val")))
try:
    DatasetCatalog.get("voc_2012_seg_val")
except FileNotFoundError as e:
    print("error", e)
"""
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    voc = os.path.join(str(datasets), "VOC2012")
    assert f"voc_2012_seg_train {voc} train" in out and f"voc_2012_seg_val {voc} val" in out
    assert f"voc_2012_seg_train_aug {voc} train_aug" in out
    synth = os.path.join(str(datasets), "VOCsynth", "VOC2012")
    assert f"voc_synth_val {synth} val" in out
    assert f"records {SYNTH_SIZES['val']}" in out
    # Used without the data: the missing folder and how to lay it out.
    error = out.split("error", 1)[1]
    assert "'voc_2012_seg_val'" in error and repr(voc) in error
    assert "SegmentationObject" in error and "VOCdevkit" in error and "DETECTRON2_DATASETS" in error


def test_missing_synthetic_data_says_how_to_generate_it(tmp_path, registered):
    dataset = registered(
        "voc_test_missing", str(tmp_path / "nowhere" / "VOC2012"), "val", setup_hint="Run X."
    )
    with pytest.raises(FileNotFoundError, match="voc_test_missing.*nowhere.*Run X."):
        DatasetCatalog.get(dataset)


def test_missing_split_file_is_named(voc_copy):
    with pytest.raises(FileNotFoundError, match="ImageSets/Segmentation/test.txt"):
        load_voc_instances(voc_copy, "test")


# ---------------------------------------------------------------------------------------
# Bad input: each error names the file


def _first(voc_root, split="val"):
    return voc_split_names(voc_root, split)[0]


def test_missing_image_is_named(voc_copy):
    name = _first(voc_copy)
    os.remove(os.path.join(voc_copy, "JPEGImages", name + ".jpg"))
    with pytest.raises(VOCDataError, match=f"JPEGImages/{name}.jpg does not exist"):
        load_voc_instances(voc_copy, "val")


def test_label_png_of_another_size_than_its_jpeg_is_named(voc_copy):
    name = _first(voc_copy)
    path = os.path.join(voc_copy, "SegmentationObject", name + ".png")
    png = Image.open(path)
    png.crop((0, 0, png.width - 3, png.height)).save(path)
    with pytest.raises(VOCDataError, match=f"SegmentationObject/{name}.png is .* but its image"):
        load_voc_instances(voc_copy, "val")


@pytest.mark.parametrize(
    "folder, suffix",
    [("SegmentationObject", ".png"), ("SegmentationClass", ".png"), ("JPEGImages", ".jpg")],
)
def test_truncated_files_are_named(voc_copy, folder, suffix):
    name = _first(voc_copy)
    path = os.path.join(voc_copy, folder, name + suffix)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(VOCDataError, match=f"{folder}/{name}{suffix} is not a readable"):
        load_voc_instances(voc_copy, "val")


def test_unreadable_xml_is_named(voc_copy):
    name = _first(voc_copy)
    with open(os.path.join(voc_copy, "Annotations", name + ".xml"), "w") as f:
        f.write("<annotation><object>")
    with pytest.raises(VOCDataError, match=f"Annotations/{name}.xml is not a readable"):
        load_voc_instances(voc_copy, "val")


def test_colour_png_instead_of_indexed_is_named(voc_copy):
    name = _first(voc_copy)
    path = os.path.join(voc_copy, "SegmentationClass", name + ".png")
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(VOCDataError, match=f"SegmentationClass/{name}.png is a RGB PNG"):
        load_voc_instances(voc_copy, "val")


@pytest.mark.parametrize("class_value", [0, 255, "two classes"])
def test_instance_without_exactly_one_class_is_named(voc_copy, class_value):
    records = load_voc_instances(voc_copy, "val")
    record = next(r for r in records if r["annotations"])
    path = os.path.join(voc_copy, "SegmentationClass", record["image_name"] + ".png")
    png = Image.open(path)
    classes = np.asarray(png).copy()
    mask = _decode(record["annotations"][0])
    if class_value == "two classes":
        ys, xs = np.nonzero(mask)
        classes[ys[0], xs[0]] = 1 + (classes[ys[0], xs[0]] % 20)
    else:
        classes[mask] = class_value
    changed = Image.fromarray(classes, mode="P")
    changed.putpalette(png.getpalette())
    changed.save(path)
    with pytest.raises(VOCDataError, match=f"Instance 1 of .*{record['image_name']}.png lies on"):
        load_voc_instances(voc_copy, "val")


def test_listed_image_without_files_is_named(voc_copy):
    with open(os.path.join(voc_copy, "ImageSets", "Segmentation", "val.txt"), "a") as f:
        f.write("2012_999999\n")
    with pytest.raises(VOCDataError, match="2012_999999"):
        load_voc_instances(voc_copy, "val")


def test_skipping_bad_files_warns_with_a_count_and_the_names(voc_copy, caplog):
    names = voc_split_names(voc_copy, "val")
    os.remove(os.path.join(voc_copy, "JPEGImages", names[1] + ".jpg"))
    with open(os.path.join(voc_copy, "ImageSets", "Segmentation", "val.txt"), "a") as f:
        f.write("2012_999999\n")
    with caplog.at_level("WARNING"):
        records = load_voc_instances(voc_copy, "val", skip_bad_files=True)
    assert [r["image_name"] for r in records] == names[:1] + names[2:]
    message = caplog.text
    assert f"Skipped 2 of {len(names) + 1} images" in message
    assert f"{names[1]}.jpg" in message and "2012_999999" in message


# ---------------------------------------------------------------------------------------
# SBD (train_aug)


def _write_list(path, names):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(n + "\n" for n in names))


def test_train_aug_is_voc_train_and_sbd_less_voc_val(voc_copy, tmp_path):
    train, val = voc_split_names(voc_copy, "train"), voc_split_names(voc_copy, "val")
    sbd = tmp_path / "SBD"
    _write_list(str(sbd / "train.txt"), ["2008_000002"] + train[:3] + val[:2])
    _write_list(str(sbd / "val.txt"), train[5:] + val[2:3] + ["2008_000001"])
    names = voc_split_names(voc_copy, "train_aug", sbd_root=str(sbd))
    assert names == sorted(train + ["2008_000001", "2008_000002"])
    with pytest.raises(FileNotFoundError, match="missing/SBD/train.txt.*missing/SBD/val.txt"):
        voc_split_names(voc_copy, "train_aug", sbd_root=str(tmp_path / "missing" / "SBD"))
    # A train_aug.txt list, where given, is used as it is.
    _write_list(os.path.join(voc_copy, "ImageSets", "Segmentation", "train_aug.txt"), val[:2])
    assert voc_split_names(voc_copy, "train_aug", sbd_root=str(sbd)) == val[:2]


def test_sbd_without_scipy_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    path = str(tmp_path / "inst" / "x.mat")
    with pytest.raises(ImportError, match="x.mat.*needs scipy"):
        voc_files._read_sbd_mat(path, "GTinst")


# SBD as the generator writes it: VOC train 0..7 and val 0..7 (PNGs), SBD train 0..9 and
# val 0..9 (.mat files). train_aug = VOC train + SBD train + SBD val - VOC val.
SBD_SIZES = {"train": 10, "val": 10}
SBD_ONLY = ["train_000008", "train_000009", "val_000008", "val_000009"]
TRAIN_AUG = [f"train_{i:06d}" for i in range(10)] + ["val_000008", "val_000009"]


@pytest.fixture(scope="module")
def sbd_datasets(synthetic_voc, tmp_path_factory):
    """A $DETECTRON2_DATASETS folder with VOC2012/ and SBD/; tests must not modify it."""
    datasets = tmp_path_factory.mktemp("datasets")
    voc_root = str(datasets / "VOC2012")
    shutil.copytree(synthetic_voc, voc_root)
    sbd_root = write_synthetic_sbd(
        str(datasets),
        voc_root,
        num_train=SBD_SIZES["train"],
        num_val=SBD_SIZES["val"],
        seed=SYNTH_SEED,
        long_side=SYNTH_LONG_SIDE,
    )
    return voc_root, sbd_root


@pytest.fixture
def sbd_copy(sbd_datasets, tmp_path):
    """(VOC2012 folder, a private copy of the SBD folder, free to break)."""
    voc_root, sbd_root = sbd_datasets
    copy = str(tmp_path / "SBD")
    shutil.copytree(sbd_root, copy)
    return voc_root, copy


def _sample(name):
    split, index = name.split("_")
    return render_sample(SYNTH_SEED, split, int(index), SYNTH_LONG_SIDE)


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [
        float(v) for v in (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    ]


def test_train_aug_reads_voc_pngs_and_sbd_mat_files(sbd_datasets):
    voc_root, sbd_root = sbd_datasets
    records = load_voc_instances(voc_root, "train_aug", sbd_root=sbd_root)
    assert [r["image_name"] for r in records] == TRAIN_AUG
    assert [r["image_id"] for r in records] == list(range(len(TRAIN_AUG)))
    sbd_objects = 0
    for record in records:
        name = record["image_name"]
        from_sbd = name in SBD_ONLY
        assert os.path.isfile(os.path.join(sbd_root, "inst", name + ".mat"))  # SBD has all
        sample = _sample(name)
        assert (record["height"], record["width"]) == sample.image.shape[:2]
        assert len(record["annotations"]) == len(sample.objects)
        for annotation, obj in zip(record["annotations"], sample.objects):
            # VOC's PNGs leave the void band out of every mask; SBD's .mat files have none.
            expected = obj.visible if from_sbd else obj.mask
            np.testing.assert_array_equal(_decode(annotation), expected)
            assert annotation["bbox"] == _bbox(expected)
            assert VOC_CLASS_NAMES[annotation["category_id"]] == obj.class_name
            # The XML's difficult / truncated follow VOC's instance order only.
            assert ("difficult" in annotation) == (not from_sbd)
        sbd_objects += from_sbd * len(sample.objects)
    assert sbd_objects >= 4


@pytest.mark.slow
def test_registered_train_aug_loads_voc2012_and_sbd_under_detectron2_datasets(sbd_datasets):
    voc_root, sbd_root = sbd_datasets
    assert os.path.dirname(voc_root) == os.path.dirname(sbd_root)
    code = """
import json
from detectron2.data import DatasetCatalog
import atto_detectron  # registers
records = DatasetCatalog.get("voc_2012_seg_train_aug")
labels = [[r["image_name"], [a["category_id"] for a in r["annotations"]]] for r in records]
print(json.dumps(labels))
"""
    env = dict(os.environ, DETECTRON2_DATASETS=os.path.dirname(voc_root))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    expected = [
        [r["image_name"], [a["category_id"] for a in r["annotations"]]]
        for r in load_voc_instances(voc_root, "train_aug", sbd_root=sbd_root)
    ]
    assert loaded == expected and [name for name, _ in loaded] == TRAIN_AUG


def _rewrite_struct(path, struct, change):
    """Rewrites the struct of an SBD .mat file as ``change(fields)`` returns it."""
    record = loadmat(path)[struct][0, 0]
    fields = {name: record[name] for name in record.dtype.names}
    savemat(path, {struct: change(fields)}, do_compression=True)


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _not_mat(path):
    with open(path, "w") as f:
        f.write("<html>404 Not Found</html>\n" * 20)


# damage: (how to damage a file, given its path and struct; the start of the error)
_BAD_MAT_FILES = {
    "empty": (lambda path, struct: open(path, "wb").close(), "{path} is not a readable MATLAB"),
    "truncated": (lambda path, struct: _truncate(path), "{path} is not a readable MATLAB"),
    "not a MAT file": (lambda path, struct: _not_mat(path), "{path} is not a readable MATLAB"),
    "no struct": (
        lambda path, struct: savemat(path, {"other": np.zeros((2, 2))}),
        "{path} holds no 1x1 struct {struct}",
    ),
    "no Segmentation": (
        lambda path, struct: _rewrite_struct(
            path, struct, lambda f: {k: v for k, v in f.items() if k != "Segmentation"}
        ),
        "{path}: struct {struct} has no field 'Segmentation'",
    ),
}


@pytest.mark.parametrize(
    "folder, struct, damage",
    [
        ("inst", "GTinst", "empty"),
        ("cls", "GTcls", "truncated"),
        ("inst", "GTinst", "not a MAT file"),
        ("cls", "GTcls", "no struct"),
        ("inst", "GTinst", "no Segmentation"),
    ],
)
def test_bad_mat_files_are_named_or_skipped(sbd_copy, caplog, folder, struct, damage):
    voc_root, sbd_root = sbd_copy
    name = SBD_ONLY[1]
    path = os.path.join(sbd_root, folder, name + ".mat")
    write, message = _BAD_MAT_FILES[damage]
    write(path, struct)
    with pytest.raises(VOCDataError, match=re.escape(message.format(path=path, struct=struct))):
        load_voc_instances(voc_root, "train_aug", sbd_root=sbd_root)
    with caplog.at_level("WARNING"):
        records = load_voc_instances(voc_root, "train_aug", sbd_root=sbd_root, skip_bad_files=True)
    assert [r["image_name"] for r in records] == [n for n in TRAIN_AUG if n != name]
    assert f"Skipped 1 of {len(TRAIN_AUG)} images" in caplog.text and path in caplog.text


@pytest.mark.parametrize("change", ["class map disagrees", "categories win", "too few", "none"])
def test_sbd_classes_come_from_categories_checked_against_the_class_map(sbd_copy, change):
    voc_root, sbd_root = sbd_copy
    name = SBD_ONLY[1]
    inst = os.path.join(sbd_root, "inst", name + ".mat")
    cls = os.path.join(sbd_root, "cls", name + ".mat")
    objects = _sample(name).objects
    assert len(objects) == 2
    first = VOC_CLASS_NAMES.index(objects[0].class_name) + 1
    other = 1 + first % len(VOC_CLASS_NAMES)

    def set_classes(fields, pixels):
        # Class ``other`` on the first ``pixels`` pixels of instance 1 in the class map.
        segmentation = fields["Segmentation"].copy()
        ys, xs = np.nonzero(objects[0].visible)
        segmentation[ys[:pixels], xs[:pixels]] = other
        return dict(fields, Segmentation=segmentation)

    expected_error = None
    if change == "class map disagrees":
        _rewrite_struct(cls, "GTcls", lambda f: set_classes(f, objects[0].visible.sum()))
        expected_error = f"Instance 1 of {inst} has class {first} (GTinst.Categories) but {cls}"
    elif change == "categories win":
        # A few pixels of another class (instances drawn in another order): still the class
        # of Categories, where VOC's rule (exactly one class) would reject the image.
        _rewrite_struct(cls, "GTcls", lambda f: set_classes(f, 5))
    elif change == "too few":
        _rewrite_struct(inst, "GTinst", lambda f: dict(f, Categories=f["Categories"][:1]))
        expected_error = f"{inst} has instance 2 but its GTinst.Categories lists 1 classes"
    else:  # without Categories, the class map decides
        _rewrite_struct(inst, "GTinst", lambda f: {k: v for k, v in f.items() if k != "Categories"})

    if expected_error:
        with pytest.raises(VOCDataError, match=re.escape(expected_error)):
            load_voc_instances(voc_root, "train_aug", sbd_root=sbd_root)
        return
    record = next(
        r
        for r in load_voc_instances(voc_root, "train_aug", sbd_root=sbd_root)
        if r["image_name"] == name
    )
    assert [VOC_CLASS_NAMES[a["category_id"]] for a in record["annotations"]] == [
        obj.class_name for obj in objects
    ]


def test_sbd_mat_without_categories_needs_one_class_per_instance(sbd_copy):
    # The fallback is VOC's rule: a few pixels of another class are an error there.
    voc_root, sbd_root = sbd_copy
    name = SBD_ONLY[0]
    inst = os.path.join(sbd_root, "inst", name + ".mat")
    cls = os.path.join(sbd_root, "cls", name + ".mat")
    _rewrite_struct(inst, "GTinst", lambda f: {k: v for k, v in f.items() if k != "Categories"})
    visible = _sample(name).objects[0].visible
    ys, xs = np.nonzero(visible)

    def one_pixel(fields):
        segmentation = fields["Segmentation"].copy()
        segmentation[ys[0], xs[0]] = 1 + segmentation[ys[0], xs[0]] % 20
        return dict(fields, Segmentation=segmentation)

    _rewrite_struct(cls, "GTcls", one_pixel)
    with pytest.raises(VOCDataError, match=re.escape(f"Instance 1 of {inst} lies on")):
        load_voc_instances(voc_root, "train_aug", sbd_root=sbd_root)


# ---------------------------------------------------------------------------------------
# Split files


def _split_path(voc_root, split):
    return os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt")


@pytest.mark.parametrize(
    "content", ["", "\n  \n", "\ufeff\n"], ids=["empty", "blank lines", "BOM only"]
)
def test_empty_split_file_is_named_before_detectron2_sees_no_images(voc_copy, registered, content):
    path = _split_path(voc_copy, "val")
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    dataset = registered("voc_test_empty_split", voc_copy, "val")
    with pytest.raises(VOCDataError, match=re.escape(f"Split file {path} is empty")):
        get_detection_dataset_dicts([dataset])


def test_empty_sbd_list_is_named(sbd_copy):
    voc_root, sbd_root = sbd_copy
    path = os.path.join(sbd_root, "val.txt")
    open(path, "w").close()
    with pytest.raises(VOCDataError, match=re.escape(f"Split file {path} is empty")):
        load_voc_instances(voc_root, "train_aug", sbd_root=sbd_root)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_duplicate_names_are_loaded_once_with_one_warning_naming_them(voc_copy, caplog):
    names = voc_split_names(voc_copy, "val")
    path = _split_path(voc_copy, "val")
    listed = names[:3] + [names[0]] + names[3:] + [names[2], names[0]]
    _write_list(path, listed)
    with caplog.at_level("WARNING"):
        records = load_voc_instances(voc_copy, "val")
    assert [r["image_name"] for r in records] == names  # first occurrence keeps its place
    assert [r["image_id"] for r in records] == list(range(len(names)))
    (warning,) = _warnings(caplog)
    assert f"Split file {path} lists 2 image(s) more than once" in warning
    assert warning.endswith(f"{names[0]}, {names[2]}")

    # Many: the first 10 named, the rest counted.
    caplog.clear()
    trainval = voc_split_names(voc_copy, "trainval")
    _write_list(_split_path(voc_copy, "trainval"), trainval + trainval[::-1])
    with caplog.at_level("WARNING"):
        assert voc_split_names(voc_copy, "trainval") == trainval
    (warning,) = _warnings(caplog)
    assert f"lists {len(trainval)} image(s)" in warning
    assert warning.endswith(", ".join(trainval[:10]) + f" and {len(trainval) - 10} more")


def test_utf8_bom_is_not_part_of_the_first_name(voc_copy):
    names = voc_split_names(voc_copy, "val")
    with open(_split_path(voc_copy, "val"), "w", encoding="utf-8-sig") as f:
        f.write("\r\n".join(names) + "\r\n")
    assert [r["image_name"] for r in load_voc_instances(voc_copy, "val")] == names


def test_a_utf16_split_file_is_read_and_other_encodings_are_named(voc_copy):
    names = voc_split_names(voc_copy, "val")
    with open(_split_path(voc_copy, "val"), "w", encoding="utf-16") as f:  # with its BOM
        f.write("\r\n".join(names) + "\r\n")
    assert [r["image_name"] for r in load_voc_instances(voc_copy, "val")] == names
    with open(_split_path(voc_copy, "val"), "wb") as f:
        f.write("\n".join(names).encode("latin-1") + b"\xe9\xff\n")
    with pytest.raises(VOCDataError, match=r"val\.txt is not UTF-8 text .*save it as UTF-8"):
        load_voc_instances(voc_copy, "val")


def test_xml_flags_follow_the_object_order(synthetic_voc):
    records = load_voc_instances(synthetic_voc, "train")
    flagged = 0
    for record in records:
        tree = ET.parse(os.path.join(synthetic_voc, "Annotations", record["image_name"] + ".xml"))
        objects = tree.getroot().findall("object")
        assert len(objects) == len(record["annotations"])
        for obj, annotation in zip(objects, record["annotations"]):
            assert obj.findtext("name") == VOC_CLASS_NAMES[annotation["category_id"]]
            assert annotation["difficult"] == int(obj.findtext("difficult"))
            assert annotation["truncated"] == int(obj.findtext("truncated"))
            flagged += annotation["difficult"] + annotation["truncated"]
    assert flagged > 0


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_an_exif_rotated_jpeg_loads_upright_as_training_reads_it(voc_copy, orientation):
    from detectron2.data import detection_utils

    name = voc_split_names(voc_copy, "val")[0]
    jpeg = os.path.join(voc_copy, "JPEGImages", f"{name}.jpg")
    before = load_voc_instances(voc_copy, "val")[0]
    # The same pixels, with an EXIF tag that says how to show them.
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.open(jpeg).save(jpeg, exif=exif, quality=95)
    record = load_voc_instances(voc_copy, "val")[0]
    image = detection_utils.read_image(jpeg, "BGR")  # what training reads: upright
    assert image.shape[:2] == (record["height"], record["width"])
    detection_utils.check_image_size(record, image)  # training's SizeMismatchError check
    turn = {3: 2, 6: -1, 8: 1}[orientation]  # counter-clockwise quarter turns
    for old, new in zip(before["annotations"], record["annotations"]):
        assert new["category_id"] == old["category_id"]
        np.testing.assert_array_equal(_decode(new), np.rot90(_decode(old), turn))
    instances = detection_utils.annotations_to_instances(
        record["annotations"], image.shape[:2], mask_format="bitmask"
    )
    assert tuple(instances.gt_masks.tensor.shape[1:]) == image.shape[:2]
