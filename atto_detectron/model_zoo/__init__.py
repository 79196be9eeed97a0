"""
The configs of this project as a model zoo, with the API of ``detectron2.model_zoo``::

    from atto_detectron import model_zoo

    cfg = model_zoo.get_config("atto_maskrcnn_voc.yaml")        # yacs CfgNode
    cfg = model_zoo.get_config("lazy/atto_maskrcnn_voc.py")     # LazyConfig
    model = model_zoo.get("synth/atto_maskrcnn_synth.yaml")     # built, eval mode

The configs are the repository's ``configs/`` folder, installed with the package.
"""

from .model_zoo import get, get_config, get_config_file, list_configs

__all__ = ["get", "get_config", "get_config_file", "list_configs"]
