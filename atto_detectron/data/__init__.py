"""
Pascal VOC 2012 instance segmentation (VOCdevkit layout, optionally with SBD). Importing
this package registers ``voc_2012_seg_{train,val,train_aug}`` and, for the generated
stand-in (:mod:`atto_detectron.synthetic`), ``voc_synth_{train,val}`` (see
:mod:`atto_detectron.data.builtin`).
"""

from . import builtin  # noqa: F401  (registers the predefined datasets)
from .builtin import register_all_voc_instances
from .coco_json import cached_coco_json
from .voc_instances import (
    VOCDataError,
    VOCInstancesMetadata,
    load_voc_instances,
    register_voc_instances,
    voc_fingerprint,
    voc_split_names,
)
from .voc_meta import VOC_CLASS_NAMES, VOC_VOID, voc_palette, voc_thing_colors

__all__ = [k for k in globals().keys() if not k.startswith("_") and k != "builtin"]
