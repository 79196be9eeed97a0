"""
Reading and checking the files of a VOC-layout dataset (see :mod:`.voc_instances` for the
layout): split lists, label PNGs, SBD ``.mat`` files, JPEG sizes and orientations, and
annotation XMLs. Every malformed file raises :class:`VOCDataError`, naming it.
"""

import codecs
import collections
import logging
import os
import xml.etree.ElementTree as ET
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from .voc_meta import VOC_CLASS_NAMES

__all__ = ["VOCDataError", "voc_split_names"]

logger = logging.getLogger(__name__)

# How many repeated names the warning about a split file lists before it only counts.
_MAX_NAMES_SHOWN = 10

_LAYOUT_HELP = (
    "Expected the VOCdevkit layout: <root>/JPEGImages/*.jpg, SegmentationObject/*.png, "
    "SegmentationClass/*.png, Annotations/*.xml and ImageSets/Segmentation/<split>.txt "
    "(see README, 'Data')."
)


class VOCDataError(ValueError):
    """A missing, unreadable or malformed file of a VOC-layout dataset (named in the message)."""


class _ImageFiles(NamedTuple):
    name: str
    jpeg: str
    instances: str  # SegmentationObject PNG, or SBD inst/*.mat
    classes: str  # SegmentationClass PNG, or SBD cls/*.mat
    xml: Optional[str]  # VOC images only: SBD numbers instances in its own order
    source: str  # "voc" or "sbd"


def _split_file(voc_root: str, split: str) -> str:
    return os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt")


def _shown(names: List[str]) -> str:
    more = len(names) - _MAX_NAMES_SHOWN
    return ", ".join(names[:_MAX_NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _read_list(path: str, warn: bool = True) -> List[str]:
    """
    The image names of a split file (first word of each non-blank line), each once, in
    the order of their first occurrence; ``warn``: log the duplicates.
    """
    with open(path, "rb") as f:
        raw = f.read()
    # Lists saved by Windows editors start with a byte-order mark (UTF-8's would otherwise
    # become part of the first name), or are UTF-16 altogether.
    encoding = "utf-16" if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise VOCDataError(
            f"Split file {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
            f"UTF-8 with one image name per line."
        ) from None
    names = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not names:
        raise VOCDataError(
            f"Split file {path} is empty: it lists no image name. It should hold one name "
            f"per line; restore it from the dataset's archive."
        )
    unique = list(dict.fromkeys(names))
    if warn and len(unique) < len(names):
        counts = collections.Counter(names)
        repeated = [name for name in unique if counts[name] > 1]
        logger.warning(
            f"Split file {path} lists {len(repeated)} image(s) more than once; each is "
            f"loaded once: {_shown(repeated)}"
        )
    return unique


def voc_split_names(voc_root: str, split: str, sbd_root: Optional[str] = None) -> List[str]:
    """
    The image names of ``split``: ``ImageSets/Segmentation/<split>.txt``, each once (a
    name listed again is dropped, with a warning naming it). Without that file,
    ``train_aug`` is composed the standard way (10,582 images on the real data): SBD
    train + SBD val + VOC train, less VOC val, sorted.

    Raises:
        FileNotFoundError: naming the missing root or split file and the expected layout.
        VOCDataError: naming a split file that lists no image.
    """
    return _split_names(voc_root, split, sbd_root, warn=True)


def _split_names(voc_root: str, split: str, sbd_root: Optional[str], warn: bool) -> List[str]:
    if not os.path.isdir(voc_root):
        raise FileNotFoundError(f"VOC dataset folder {voc_root!r} does not exist. {_LAYOUT_HELP}")
    path = _split_file(voc_root, split)
    if os.path.isfile(path):
        return _read_list(path, warn)
    if split == "train_aug" and sbd_root is not None:
        sources = [
            _split_file(voc_root, "train"),
            _split_file(voc_root, "val"),
            os.path.join(sbd_root, "train.txt"),
            os.path.join(sbd_root, "val.txt"),
        ]
        missing = [p for p in sources if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"Cannot compose train_aug: {', '.join(missing)} missing. Put SBD's "
                f"benchmark_RELEASE/dataset folder (cls/, inst/, train.txt, val.txt) at "
                f"{sbd_root!r}, or provide {path}."
            )
        voc_train, voc_val, sbd_train, sbd_val = (set(_read_list(p, warn)) for p in sources)
        names = sorted((voc_train | sbd_train | sbd_val) - voc_val)
        if not names:
            raise VOCDataError(
                f"train_aug composed from {', '.join(sources)} is empty: every image of "
                f"VOC train and SBD is in VOC val. Check that these are the right lists."
            )
        return names
    raise FileNotFoundError(f"Split file {path} does not exist. {_LAYOUT_HELP}")


def _image_files(voc_root: str, name: str, sbd_root: Optional[str]) -> _ImageFiles:
    # VOC's own annotation wins where an image has both (VOC's outlines are finer and
    # carry the void band); SBD fills in the rest of train_aug.
    jpeg = os.path.join(voc_root, "JPEGImages", f"{name}.jpg")
    xml = os.path.join(voc_root, "Annotations", f"{name}.xml")
    xml = xml if os.path.isfile(xml) else None
    voc_instances = os.path.join(voc_root, "SegmentationObject", f"{name}.png")
    if sbd_root is None or os.path.isfile(voc_instances):
        voc_classes = os.path.join(voc_root, "SegmentationClass", f"{name}.png")
        return _ImageFiles(name, jpeg, voc_instances, voc_classes, xml, "voc")
    # The XML is not used for SBD images: only VOC numbers its instances in the order of
    # the XML objects, so elsewhere the difficult / truncated flags could go to the wrong
    # object.
    sbd_instances = os.path.join(sbd_root, "inst", f"{name}.mat")
    sbd_classes = os.path.join(sbd_root, "cls", f"{name}.mat")
    return _ImageFiles(name, jpeg, sbd_instances, sbd_classes, None, "sbd")


def _read_label_png(path: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("P", "L"):
                raise VOCDataError(
                    f"{path} is a {image.mode} PNG; VOC label PNGs are indexed ('P', label "
                    f"= palette index) or 'L'. Convert colours back to indices first."
                )
            return np.asarray(image)
    except (OSError, SyntaxError, UnidentifiedImageError) as e:
        raise VOCDataError(f"{path} is not a readable PNG (truncated or corrupt?): {e}") from e


_SBD_HELP = "Extract it again from SBD's benchmark.tgz (benchmark_RELEASE/dataset)."


def _read_sbd_mat(path: str, struct: str) -> np.void:
    """The 1x1 MATLAB struct ``struct`` (GTinst or GTcls) of an SBD .mat file, as a record."""
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise ImportError(
            f"Reading SBD annotations ({path}) needs scipy: `pip install scipy`."
        ) from e
    try:
        value = loadmat(path, variable_names=[struct]).get(struct)
    except Exception as e:
        # A bad file surfaces from scipy as MatReadError, OSError, ValueError, IndexError,
        # TypeError, ... depending on where it breaks; none of them names the file.
        raise VOCDataError(
            f"{path} is not a readable MATLAB file (empty, truncated or corrupt?): "
            f"{type(e).__name__}: {e}. {_SBD_HELP}"
        ) from e
    if not isinstance(value, np.ndarray) or value.dtype.names is None or value.size != 1:
        raise VOCDataError(
            f"{path} holds no 1x1 struct {struct}, which every SBD "
            f"{'inst' if struct == 'GTinst' else 'cls'}/*.mat file holds. {_SBD_HELP}"
        )
    return value.flat[0]


def _sbd_field(record: np.void, field: str, path: str, struct: str) -> np.ndarray:
    if field not in record.dtype.names:
        raise VOCDataError(
            f"{path}: struct {struct} has no field {field!r} (it has "
            f"{', '.join(record.dtype.names)}). {_SBD_HELP}"
        )
    return np.asarray(record[field])


def _sbd_integers(
    values: np.ndarray, low: int, high: int, path: str, what: str, ndim: Optional[int] = None
) -> np.ndarray:
    """
    ``values`` as int64, checked to be whole numbers low..high (and, where ``ndim`` is
    given, a non-empty array of that many dimensions).
    """
    valid = values.dtype.kind in "uif" and (
        ndim is None or (values.ndim == ndim and values.size > 0)
    )
    if valid and values.size:
        valid = bool(low <= values.min() and values.max() <= high)  # False for NaN
        if valid and values.dtype.kind == "f":
            valid = bool(np.all(values == np.round(values)))
    if not valid:
        raise VOCDataError(
            f"{path}: {what} should hold whole numbers {low}..{high}"
            f"{f' in {ndim} dimensions' if ndim else ''}, not shape {values.shape} dtype "
            f"{values.dtype}. {_SBD_HELP}"
        )
    return values.astype(np.int64)


def _read_sbd_labels(files: _ImageFiles) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    inst = _read_sbd_mat(files.instances, "GTinst")
    instances = _sbd_field(inst, "Segmentation", files.instances, "GTinst")
    instances = _sbd_integers(instances, 0, 255, files.instances, "GTinst.Segmentation", 2)
    categories = None
    if "Categories" in inst.dtype.names:
        categories = _sbd_field(inst, "Categories", files.instances, "GTinst").ravel()
        categories = _sbd_integers(
            categories, 1, len(VOC_CLASS_NAMES), files.instances, "GTinst.Categories"
        )
    cls = _read_sbd_mat(files.classes, "GTcls")
    classes = _sbd_field(cls, "Segmentation", files.classes, "GTcls")
    classes = _sbd_integers(classes, 0, 255, files.classes, "GTcls.Segmentation", 2)
    return instances.astype(np.uint8), classes.astype(np.uint8), categories


def _read_labels(files: _ImageFiles) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(instances (H, W) uint8, classes (H, W) uint8, SBD's class of each instance or None)."""
    for path in (files.instances, files.classes):
        if not os.path.isfile(path):
            raise VOCDataError(f"{files.name}: annotation {path} does not exist.")
    if files.source == "sbd":
        return _read_sbd_labels(files)
    return _read_label_png(files.instances), _read_label_png(files.classes), None


# EXIF orientation -> the transpose that shows the image upright, as Pillow's
# ImageOps.exif_transpose and Detectron2's read_image apply it.
_EXIF_ORIENTATION = 0x0112
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _jpeg_size(path: str) -> Tuple[int, int, int]:
    """
    (width, height, EXIF orientation) of a JPEG as stored, decoded (at 1/8 scale, which
    is cheap) to catch truncation; orientation 1 where the file has none.
    """
    if not os.path.isfile(path):
        raise VOCDataError(f"Image {path} does not exist.")
    try:
        with Image.open(path) as image:
            size = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
            return size[0], size[1], orientation
    except (OSError, SyntaxError, UnidentifiedImageError) as e:
        raise VOCDataError(f"{path} is not a readable image (truncated or corrupt?): {e}") from e


def _upright(labels: np.ndarray, orientation: int) -> np.ndarray:
    """Label pixels (in the stored JPEG's frame) turned as its EXIF orientation turns it."""
    method = _EXIF_TRANSPOSE.get(orientation)
    if method is None:
        return labels
    return np.asarray(Image.fromarray(labels).transpose(method))


def _read_xml_objects(path: str) -> List[Dict]:
    try:
        root = ET.parse(path).getroot()
        return [
            {
                "name": obj.findtext("name", "").strip(),
                "difficult": int(obj.findtext("difficult", "0") or 0),
                "truncated": int(obj.findtext("truncated", "0") or 0),
            }
            for obj in root.findall("object")
        ]
    except (ET.ParseError, ValueError, OSError) as e:
        raise VOCDataError(f"{path} is not a readable VOC annotation XML: {e}") from e
