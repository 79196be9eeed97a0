"""Helpers shared by several test modules (fixtures live in conftest.py)."""

import os

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO_ROOT, "configs")

# The generated VOC-layout data the tests train and evaluate on (see synthetic_voc).
SYNTH_SEED = 0
SYNTH_SIZES = {"train": 8, "val": 8}
SYNTH_LONG_SIDE = 256
SYNTH_DATASETS = {"train": "synth_test_train", "val": "synth_test_val"}


def register_synthetic_voc(voc_root):
    """Registers the splits of ``voc_root`` as SYNTH_DATASETS (once per process)."""
    from detectron2.data import DatasetCatalog

    from atto_detectron.data import register_voc_instances

    for split, name in SYNTH_DATASETS.items():
        if name not in DatasetCatalog.list():
            cache = os.path.join(os.path.dirname(voc_root), "coco_json")
            register_voc_instances(name, voc_root, split, json_cache_dir=cache)


# Float32 results of one computation done in another order (a fused model against the
# original, or oneDNN's AVX2, AVX-512 and AMX kernels on different machines) differ by
# a few units in the last place of the largest values being summed: an error relative
# to the tensor's magnitude, not to each element, so an element near zero can carry an
# absolute error larger than itself. Measured: 5e-7 of the magnitude on an AMD EPYC
# (AVX2), 1.5e-6 on an Intel Xeon (AVX-512, AMX). A BN fused with its epsilon off by
# 1e-3 is 3e-3 away.
SCALE_TOLERANCE = 3e-5


def assert_close_to_scale(actual, expected, rel=SCALE_TOLERANCE, name=""):
    """
    ``|actual - expected| <= rel * max|expected|`` everywhere (see SCALE_TOLERANCE), with
    a message that gives the error and the magnitude.
    """
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    scale = expected.abs().max().item() if expected.numel() else 0.0
    error = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert error <= rel * max(
        scale, 1e-12
    ), f"{name}: max error {error:.3g} exceeds {rel:g} of the magnitude {scale:.3g}"


def leave_process_group():
    """
    Ends a worker of ``detectron2.engine.launch`` in a test: the processes leave the Gloo
    group together. A process that exits while another still uses the group can abort in
    Gloo's threads ("terminate called without an active exception"). Drop the worker's
    DistributedDataParallel modules first.
    """
    from detectron2.utils import comm

    comm.synchronize()
    torch.distributed.destroy_process_group()
