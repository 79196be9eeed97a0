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

The files are read and checked in :mod:`.voc_files`, the records built in
:mod:`.voc_records`; this module registers the datasets.
"""

from typing import Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from .coco_json import cached_coco_json
from .voc_files import (
    VOCDataError,
    voc_split_names,
)
from .voc_meta import VOC_CLASS_NAMES, voc_thing_colors
from .voc_records import load_voc_instances, voc_fingerprint

__all__ = [
    "VOCDataError",
    "VOCInstancesMetadata",
    "load_voc_instances",
    "register_voc_instances",
    "voc_split_names",
    "voc_fingerprint",
]


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
