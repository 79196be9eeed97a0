"""
Pascal VOC 2012 instance segmentation in Detectron2's dataset format.

Reads the VOCdevkit layout::

    VOC2012/
      JPEGImages/<name>.jpg
      SegmentationObject/<name>.png   indexed PNG: 0 background, 1..N instances, 255 void
      SegmentationClass/<name>.png    indexed PNG: 0 background, 1..20 classes, 255 void
      Annotations/<name>.xml          optional here: difficult / truncated flags
      ImageSets/Segmentation/{train,val,trainval}.txt

and, for ``train_aug``, the Semantic Boundaries Dataset (SBD, Hariharan et al. 2011)
folder ``dataset/`` of ``benchmark_RELEASE``::

    SBD/
      inst/<name>.mat   1x1 struct GTinst: Segmentation (H, W) uint8 0 background,
                        1..N instances; Categories (N, 1) class 1..20 of each instance;
                        Boundaries (N, 1) cell (not read)
      cls/<name>.mat    1x1 struct GTcls: Segmentation (H, W) uint8 0..20 classes;
                        Boundaries, CategoriesPresent (not read)
      train.txt, val.txt

Each value 1..N of a SegmentationObject PNG (its palette indices, not its colours) is one
instance; its class is the one SegmentationClass value under its pixels. The void band
(255) drawn along every outline belongs to no instance. An SBD instance's class is its
entry of ``GTinst.Categories`` (the class map, which has no void band, must agree on most
of its pixels); files without Categories fall back to the class map, as for VOC. Boxes are
the masks' extents, masks are COCO RLE.

Split files list one image name per line (a UTF-8 BOM is ignored); an image listed twice
is loaded once, with a warning.
"""

import codecs
import collections
import hashlib
import logging
import os
import xml.etree.ElementTree as ET
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image, UnidentifiedImageError

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.structures import BoxMode

from .coco_json import cached_coco_json
from .voc_meta import VOC_CLASS_NAMES, VOC_VOID, voc_thing_colors

__all__ = [
    "VOCDataError",
    "VOCInstancesMetadata",
    "load_voc_instances",
    "register_voc_instances",
    "voc_split_names",
    "voc_fingerprint",
]

logger = logging.getLogger(__name__)

# Part of the COCO-json cache key: bump when the records this module produces change.
_RECORD_FORMAT_VERSION = 2

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


class VOCInstancesMetadata(Metadata):
    """
    Metadata of a registered VOC-layout dataset. Its ``json_file`` (what Detectron2's
    COCOEvaluator reads) is computed on first use: the dataset converted to COCO json
    once, cached under a name keyed by :func:`voc_fingerprint`, so an edited or
    regenerated dataset never gets a stale ground truth.
    """

    def __getattr__(self, key):
        if key == "json_file":
            digest = voc_fingerprint(self.dirname, self.split, self.sbd_root, self.skip_bad_files)
            return cached_coco_json(self.name, digest, self.json_cache_dir)
        return super().__getattr__(key)


def register_voc_instances(
    name: str,
    voc_root: str,
    split: str,
    sbd_root: Optional[str] = None,
    skip_bad_files: bool = False,
    json_cache_dir: Optional[str] = None,
    setup_hint: str = "",
) -> None:
    """
    Registers a VOC-layout split as ``name`` in Detectron2's DatasetCatalog (loaded
    lazily, on first use) and MetadataCatalog (the 20 VOC classes and palette colours).

    Args:
        name: the dataset name for DATASETS.TRAIN / DATASETS.TEST.
        voc_root, split, sbd_root, skip_bad_files: see :func:`load_voc_instances`.
        json_cache_dir: where the COCO json for COCOEvaluator is cached (default:
            ``$XDG_CACHE_HOME/atto-detectron/coco_json``).
        setup_hint: appended to the error raised when the data is missing (how to get it).
    """

    def load():
        try:
            return load_voc_instances(voc_root, split, sbd_root, skip_bad_files)
        except FileNotFoundError as e:
            if not setup_hint:
                raise
            raise FileNotFoundError(f"Dataset {name!r}: {e} {setup_hint}") from e

    DatasetCatalog.register(name, load)
    # Keep what may already have been set on a plain Metadata of this name.
    existing = MetadataCatalog.get(name).as_dict() if name in MetadataCatalog.list() else {}
    existing["name"] = name
    MetadataCatalog[name] = VOCInstancesMetadata(**existing)
    MetadataCatalog.get(name).set(
        thing_classes=list(VOC_CLASS_NAMES),
        thing_colors=voc_thing_colors(),
        dirname=voc_root,
        split=split,
        year=2012,
        sbd_root=sbd_root,
        skip_bad_files=skip_bad_files,
        json_cache_dir=json_cache_dir,
        evaluator_type="coco",
    )
