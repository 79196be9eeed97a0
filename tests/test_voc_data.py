"""The VOC instance segmentation loader, on generated data in the VOCdevkit layout."""

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances

from atto_detectron.data import (
    VOC_CLASS_NAMES,
    VOCDataError,
    load_voc_instances,
    register_voc_instances,
    render_sample,
    voc_palette,
    voc_split_names,
    write_synthetic_voc,
)
from atto_detectron.data import voc_instances as voc_instances_module

from .conftest import REPO_ROOT, SYNTH_DATASETS, SYNTH_LONG_SIDE, SYNTH_SEED, SYNTH_SIZES


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
    assert f"'voc_2012_seg_val'" in error and repr(voc) in error
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


def test_sbd_annotations_fill_in_images_without_voc_pngs(voc_copy, tmp_path, monkeypatch):
    # SBD's .mat files hold the same maps as VOC's PNGs (without the void band): move
    # one image's labels to SBD and read them back through the .mat reader.
    name = _first(voc_copy, "train")
    expected = load_voc_instances(voc_copy, "train")[0]
    sbd = tmp_path / "SBD"
    _write_list(str(sbd / "train.txt"), [name])
    _write_list(str(sbd / "val.txt"), [])
    maps = {}
    for folder, sub, struct in (
        ("SegmentationObject", "inst", "GTinst"),
        ("SegmentationClass", "cls", "GTcls"),
    ):
        png = os.path.join(voc_copy, folder, name + ".png")
        maps[(os.path.join(str(sbd), sub, name + ".mat"), struct)] = _png(png)
        os.makedirs(sbd / sub, exist_ok=True)
        (sbd / sub / (name + ".mat")).write_bytes(b"MATLAB 5.0")
        os.remove(png)
    monkeypatch.setattr(
        voc_instances_module, "_read_sbd_mat", lambda path, struct: maps[(path, struct)]
    )
    records = load_voc_instances(voc_copy, "train_aug", sbd_root=str(sbd))
    record = next(r for r in records if r["image_name"] == name)
    assert [a["category_id"] for a in record["annotations"]] == [
        a["category_id"] for a in expected["annotations"]
    ]
    for a, b in zip(record["annotations"], expected["annotations"]):
        assert a["segmentation"] == b["segmentation"] and a["bbox"] == b["bbox"]


def test_sbd_without_scipy_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    path = str(tmp_path / "inst" / "x.mat")
    with pytest.raises(ImportError, match="x.mat.*needs scipy"):
        voc_instances_module._read_sbd_mat(path, "GTinst")


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
