"""AttoNets (Wong et al., 2019) for Detectron2.

Importing this package registers the AttoNet backbones in Detectron2's
``BACKBONE_REGISTRY`` (``build_attonet_backbone``, ``build_attonet_fpn_backbone``) and the
VOC-layout datasets (``voc_2012_seg_*``, ``voc_synth_*``, see :mod:`atto_detectron.data`).
"""

from ._require_detectron2 import require_detectron2

require_detectron2()

from . import data  # noqa: E402,F401  (registers the VOC datasets)
from .config import add_attonet_config  # noqa: E402
from .modeling import (  # noqa: E402
    ATTONET_VARIANTS,
    AttoNet,
    AttoNetClassifier,
    AttoNetSpec,
    build_attonet_backbone,
    build_attonet_classifier,
    build_attonet_fpn_backbone,
    get_attonet_spec,
    load_attonet_spec,
    save_attonet_spec,
)

__version__ = "0.1.0"

__all__ = [
    "ATTONET_VARIANTS",
    "AttoNet",
    "AttoNetClassifier",
    "AttoNetSpec",
    "add_attonet_config",
    "build_attonet_backbone",
    "build_attonet_classifier",
    "build_attonet_fpn_backbone",
    "get_attonet_spec",
    "load_attonet_spec",
    "save_attonet_spec",
]
