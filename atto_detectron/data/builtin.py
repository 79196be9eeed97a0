"""
Registers the predefined VOC-layout datasets under ``$DETECTRON2_DATASETS`` (default
``./datasets``), the way ``detectron2/data/datasets/builtin.py`` registers Detectron2's:
lazily, so that nothing is read until a dataset is used, and a missing folder is
reported then with how to lay it out.

    $DETECTRON2_DATASETS/
      VOC2012/            Pascal VOC 2012 (the VOC2012 folder of VOCdevkit)
      SBD/                SBD's benchmark_RELEASE/dataset (cls/, inst/, train.txt, val.txt)
      VOCsynth/VOC2012/   the generated stand-in (tools/make_synthetic_voc.py)
      VOCsynth_grid/VOC2012/  the same generator, sized to compare backbones: the same
                          train images, a holdout split to tune recipes on, 2,000 val
"""

import os

from .voc_instances import register_voc_instances

__all__ = ["register_all_voc_instances"]

# name: (VOC root under the datasets folder, split, SBD folder or None)
_PREDEFINED_SPLITS_VOC_INSTANCES = {
    "voc_2012_seg_train": ("VOC2012", "train", None),
    "voc_2012_seg_val": ("VOC2012", "val", None),
    "voc_2012_seg_train_aug": ("VOC2012", "train_aug", "SBD"),
    "voc_synth_train": ("VOCsynth/VOC2012", "train", None),
    "voc_synth_val": ("VOCsynth/VOC2012", "val", None),
    "voc_synth_grid_train": ("VOCsynth_grid/VOC2012", "train", None),
    "voc_synth_grid_holdout": ("VOCsynth_grid/VOC2012", "holdout", None),
    "voc_synth_grid_val": ("VOCsynth_grid/VOC2012", "val", None),
}

# Written next to the split lists of a generated folder: the arguments it was generated with.
GENERATOR_FILE = "generator.json"
# How tools/make_synthetic_voc.py writes each generated folder.
SYNTHETIC_FOLDER_ARGS = {
    "VOCsynth": "",
    "VOCsynth_grid": " --train 1000 --holdout 400 --val 2000",
}


def _setup_hint(root: str, voc_dir: str) -> str:
    folder = voc_dir.split("/")[0]
    if folder in SYNTHETIC_FOLDER_ARGS:
        return (
            f"Generate it with `python tools/make_synthetic_voc.py --out "
            f"{os.path.join(root, folder)}{SYNTHETIC_FOLDER_ARGS[folder]}` "
            f"({'`make demo`' if folder == 'VOCsynth' else '`make backbone-grid`'} does), or "
            f"point $DETECTRON2_DATASETS at the folder that holds {folder}/."
        )
    return (
        f"Put the VOC2012 folder of VOCdevkit (VOCtrainval_11-May-2012.tar) at "
        f"{os.path.join(root, 'VOC2012')} (for train_aug also SBD's benchmark_RELEASE/dataset "
        f"at {os.path.join(root, 'SBD')}), or set $DETECTRON2_DATASETS to the folder that "
        f"holds them."
    )


def register_all_voc_instances(root: str) -> None:
    """Registers every dataset of the table above with its files under ``root``."""
    for name, (voc_dir, split, sbd_dir) in _PREDEFINED_SPLITS_VOC_INSTANCES.items():
        register_voc_instances(
            name,
            os.path.join(root, voc_dir),
            split,
            sbd_root=os.path.join(root, sbd_dir) if sbd_dir else None,
            setup_hint=_setup_hint(root, voc_dir),
        )


if __name__.endswith(".builtin"):
    # Registered on import, like Detectron2's own builtin datasets.
    _root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    register_all_voc_instances(_root)
