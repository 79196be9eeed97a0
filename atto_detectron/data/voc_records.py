"""
Detectron2 dataset dicts from the files of a VOC-layout dataset (read by
:mod:`.voc_files`): one record per image, one annotation per instance, and a fingerprint
of everything the records depend on.
"""

import hashlib
import logging
import os
from typing import Dict, List, Optional

import numpy as np
import pycocotools.mask as mask_util

from detectron2.structures import BoxMode

from .voc_files import (
    _EXIF_TRANSPOSE,
    _SBD_HELP,
    VOCDataError,
    _image_files,
    _ImageFiles,
    _jpeg_size,
    _read_labels,
    _read_xml_objects,
    _split_names,
    _upright,
    voc_split_names,
)
from .voc_meta import VOC_CLASS_NAMES, VOC_VOID

__all__ = ["load_voc_instances", "voc_fingerprint"]

logger = logging.getLogger(__name__)

# Part of the COCO-json cache key: bump when the records change (built here from what
# .voc_files reads).
_RECORD_FORMAT_VERSION = 2


def _instance_classes(
    files: _ImageFiles,
    instances: np.ndarray,
    classes: np.ndarray,
    categories: Optional[np.ndarray] = None,
) -> Dict:
    """
    {instance id: class 1..20}. Without ``categories`` each instance must lie on exactly
    one class of the class map; with SBD's ``categories`` (class of instance k at k - 1)
    the class map must give that class to most of the instance's pixels.
    """
    labelled = (instances != 0) & (instances != VOC_VOID)
    pairs, counts = np.unique(
        instances[labelled].astype(np.int32) * 256 + classes[labelled], return_counts=True
    )
    found: Dict[int, Dict[int, int]] = {}
    for pair, count in zip(pairs.tolist(), counts.tolist()):
        found.setdefault(pair // 256, {})[pair % 256] = count
    if categories is not None:
        return _check_categories(files, found, categories)
    result = {}
    for instance_id, class_pixels in found.items():
        labels = list(class_pixels)
        if len(labels) != 1 or not 1 <= labels[0] <= len(VOC_CLASS_NAMES):
            raise VOCDataError(
                f"Instance {instance_id} of {files.instances} lies on class values "
                f"{class_pixels} (value: pixels) of {files.classes}; each instance needs "
                f"exactly one class 1..{len(VOC_CLASS_NAMES)} under all of its pixels."
            )
        result[instance_id] = labels[0]
    return result


def _check_categories(
    files: _ImageFiles, found: Dict[int, Dict[int, int]], categories: np.ndarray
) -> Dict:
    # The class map is only a cross-check here: it is drawn from the same instances, but
    # where instances overlap it may order them differently, so some pixels may disagree.
    result = {}
    for instance_id, class_pixels in found.items():
        if instance_id > len(categories):
            raise VOCDataError(
                f"{files.instances} has instance {instance_id} but its GTinst.Categories "
                f"lists {len(categories)} classes (one per instance). {_SBD_HELP}"
            )
        label = int(categories[instance_id - 1])
        if 2 * class_pixels.get(label, 0) <= sum(class_pixels.values()):
            raise VOCDataError(
                f"Instance {instance_id} of {files.instances} has class {label} "
                f"(GTinst.Categories) but {files.classes} gives its pixels the classes "
                f"{class_pixels} (value: pixels); the two files do not belong together. "
                f"{_SBD_HELP}"
            )
        result[instance_id] = label
    return result


def _load_record(files: _ImageFiles, image_id: int) -> Dict:
    width, height, orientation = _jpeg_size(files.jpeg)
    instances, classes, categories = _read_labels(files)
    for path, labels in ((files.instances, instances), (files.classes, classes)):
        if labels.shape != (height, width):
            raise VOCDataError(
                f"{path} is {labels.shape[1]}x{labels.shape[0]} but its image {files.jpeg} "
                f"is {width}x{height} (width x height); labels must match their image."
            )
    # Labels are drawn on the pixels as stored; Detectron2's read_image shows a JPEG with
    # an EXIF orientation upright, so the labels turn with it and the record gives the
    # upright size.
    if orientation in _EXIF_TRANSPOSE:
        instances, classes = _upright(instances, orientation), _upright(classes, orientation)
        height, width = instances.shape
    xml_objects = _read_xml_objects(files.xml) if files.xml else None

    annotations = []
    labels = _instance_classes(files, instances, classes, categories)
    for instance_id, label in sorted(labels.items()):
        rle = mask_util.encode(np.asfortranarray(instances == instance_id, dtype=np.uint8))
        annotation = {
            "bbox": mask_util.toBbox(rle).tolist(),
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": label - 1,
            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            "iscrowd": 0,
        }
        # VOC numbers a segmented image's instances in the order of its XML objects.
        if xml_objects and instance_id <= len(xml_objects):
            obj = xml_objects[instance_id - 1]
            if obj["name"] == VOC_CLASS_NAMES[label - 1]:
                annotation["difficult"] = obj["difficult"]
                annotation["truncated"] = obj["truncated"]
        annotations.append(annotation)

    return {
        "file_name": files.jpeg,
        "image_id": image_id,
        "image_name": files.name,
        "height": height,
        "width": width,
        "annotations": annotations,
    }


def load_voc_instances(
    voc_root: str, split: str, sbd_root: Optional[str] = None, skip_bad_files: bool = False
) -> List[Dict]:
    """
    Loads a VOC-layout instance segmentation split into Detectron2's format.

    Args:
        voc_root: the ``VOC2012`` folder (JPEGImages, SegmentationObject, ...).
        split: a file of ``ImageSets/Segmentation`` without ``.txt``: ``train``, ``val``,
            ``trainval``, or ``train_aug`` (composed from SBD's lists when the file is
            absent, see :func:`voc_split_names`).
        sbd_root: SBD's ``benchmark_RELEASE/dataset`` folder, for images that have no
            SegmentationObject PNG (train_aug).
        skip_bad_files: leave out images whose files are missing or malformed, with one
            warning that counts and names them, instead of raising.

    Returns:
        list[dict]: one record per listed image (once each), in list order:
        ``file_name``, ``image_id`` (position in the list), ``image_name``, ``height``,
        ``width``, ``annotations`` (``bbox`` XYWH_ABS from the mask, ``category_id``
        0..19, ``segmentation`` COCO RLE, ``iscrowd`` 0, and ``difficult`` /
        ``truncated`` where the XML of a VOC-annotated image gives them). Images without
        instances are kept (Detectron2 filters them out for training with
        DATALOADER.FILTER_EMPTY_ANNOTATIONS).

    Raises:
        FileNotFoundError: the root or the split file is missing.
        VOCDataError: naming the file, for an empty split file, or a listed image whose
            JPEG, label PNG or SBD .mat file is missing, unreadable or truncated, whose
            labels differ in size from the JPEG, or with an instance that does not lie
            on exactly one class (SBD: whose GTinst.Categories entry is missing or not
            the class of most of its pixels in GTcls).
    """
    names = voc_split_names(voc_root, split, sbd_root)
    records, skipped = [], []
    for image_id, name in enumerate(names):
        files = _image_files(voc_root, name, sbd_root)
        try:
            records.append(_load_record(files, image_id))
        except VOCDataError as e:
            if not skip_bad_files:
                raise
            skipped.append(str(e))
    if skipped:
        shown = "\n  ".join(skipped[:10]) + ("\n  ..." if len(skipped) > 10 else "")
        logger.warning(
            f"Skipped {len(skipped)} of {len(names)} images of {voc_root} split {split!r} "
            f"because of bad files:\n  {shown}"
        )
    logger.info(f"Loaded {len(records)} images of {voc_root} split {split!r}.")
    return records


def voc_fingerprint(
    voc_root: str, split: str, sbd_root: Optional[str] = None, skip_bad_files: bool = False
) -> str:
    """
    A digest of what :func:`load_voc_instances` reads: the split list, the bytes of every
    label file and XML, and the size and modification time of every JPEG. Cheap (no
    decoding); it changes whenever the loaded records can.
    """
    names = _split_names(voc_root, split, sbd_root, warn=False)  # the loader warns
    digest = hashlib.sha1()
    digest.update(
        repr(
            (
                _RECORD_FORMAT_VERSION,
                os.path.abspath(voc_root),
                split,
                sbd_root and os.path.abspath(sbd_root),
                bool(skip_bad_files),
            )
        ).encode()
    )
    for name in names:
        files = _image_files(voc_root, name, sbd_root)
        digest.update(name.encode() + b"\0")
        for path in (files.instances, files.classes, files.xml):
            if path and os.path.isfile(path):
                with open(path, "rb") as f:
                    digest.update(path.encode() + b"\0" + f.read())
        try:
            stat = os.stat(files.jpeg)
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()
