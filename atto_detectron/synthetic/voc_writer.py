"""
Writes a generated sample (:class:`~.voc_scene.SyntheticSample`) as VOC stores an image:
its JPEG, label PNGs (SegmentationObject, SegmentationClass) and annotation XML.
"""

import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np
from PIL import Image

from ..data.voc_meta import voc_palette
from .voc_scene import SyntheticSample

__all__ = ["write_sample"]


def _write_png(path: str, labels: np.ndarray):
    image = Image.fromarray(labels, mode="P")
    image.putpalette(voc_palette().flatten().tolist())
    image.save(path)


def _xml(sample: SyntheticSample) -> ET.ElementTree:
    h, w = sample.instances.shape
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{sample.name}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "atto-detectron synthetic VOC"
    size = ET.SubElement(root, "size")
    for key, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for obj in sample.objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.class_name
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = str(int(obj.difficult))
        ys, xs = np.nonzero(obj.visible)
        box = ET.SubElement(node, "bndbox")
        # VOC boxes are 1-based and inclusive.
        for key, value in (
            ("xmin", xs.min()),
            ("ymin", ys.min()),
            ("xmax", xs.max()),
            ("ymax", ys.max()),
        ):
            ET.SubElement(box, key).text = str(int(value) + 1)
    ET.indent(root)
    return ET.ElementTree(root)


def _write_jpeg(voc_root: str, sample: SyntheticSample, jpeg_quality: int):
    cv2.imwrite(
        os.path.join(voc_root, "JPEGImages", f"{sample.name}.jpg"),
        sample.image[:, :, ::-1],
        [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality],
    )


def _jpeg_quality(seed: int, index: int) -> int:
    return int(75 + (index * 7919 + seed) % 21)  # varied, as in photo collections


def write_sample(voc_root: str, sample: SyntheticSample, jpeg_quality: int = 90):
    """Writes a sample's JPEG, label PNGs and XML under ``voc_root`` (the VOC2012 folder)."""
    _write_jpeg(voc_root, sample, jpeg_quality)
    _write_png(os.path.join(voc_root, "SegmentationObject", f"{sample.name}.png"), sample.instances)
    _write_png(os.path.join(voc_root, "SegmentationClass", f"{sample.name}.png"), sample.classes)
    _xml(sample).write(os.path.join(voc_root, "Annotations", f"{sample.name}.xml"))
