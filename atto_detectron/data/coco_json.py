"""COCO-format json of a registered dataset, for COCOEvaluator, cached by content."""

import os
from typing import Optional

from detectron2.data.datasets.coco import convert_to_coco_json

__all__ = ["cached_coco_json", "default_cache_dir"]


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/atto-detectron/coco_json`` (``~/.cache/...`` without it)."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(cache_home, "atto-detectron", "coco_json")


def cached_coco_json(dataset_name: str, digest: str, cache_dir: Optional[str] = None) -> str:
    """
    Path of ``dataset_name`` in COCO json format, written on first use with Detectron2's
    ``convert_to_coco_json`` (atomically, under a file lock) and reused after.

    Args:
        dataset_name: a dataset registered in DatasetCatalog and MetadataCatalog.
        digest: a digest of the dataset's content; it names the file, so a changed dataset
            gets a new file instead of a stale one.
        cache_dir: folder of the cached files (default: :func:`default_cache_dir`).
    """
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, f"{dataset_name}_{digest[:16]}_coco_format.json")
    if not os.path.isfile(path):
        os.makedirs(cache_dir, exist_ok=True)
        convert_to_coco_json(dataset_name, path, allow_cached=False)
    return path
