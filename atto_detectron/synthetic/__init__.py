"""
Generated stand-ins for the real data, in the real data's layouts: Pascal VOC
(VOCdevkit, with SBD .mat files for train_aug) for detection, and ImageFolder for
classification. Used by ``make demo``, the tests and the benchmarks; the loaders in
:mod:`atto_detectron.data` and :mod:`atto_detectron.classification` read them as they
read the real data. Not imported by ``import atto_detectron`` (drawing needs OpenCV).
"""

from .imagefolder import (
    MAX_SYNTHETIC_CLASSES,
    make_synthetic_imagefolder,
    render_synthetic_image,
    synthetic_class_names,
)
from .voc import SYNTHETIC_CLASSES, render_sample, write_synthetic_sbd, write_synthetic_voc

__all__ = [k for k in globals().keys() if not k.startswith("_")]
