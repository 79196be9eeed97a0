"""Fixtures of the test suite; the shared helpers and constants are in helpers.py."""

import os

import pytest
import torch

from .helpers import SYNTH_LONG_SIDE, SYNTH_SEED, SYNTH_SIZES, register_synthetic_voc

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory):
    """
    A small dataset written by the generator in the VOCdevkit layout (8 train and 8 val
    images), registered through the VOC loader as ``synth_test_train`` /
    ``synth_test_val``. Returns its VOC2012 folder; tests must not modify it.
    """
    from atto_detectron.synthetic import write_synthetic_voc

    out = tmp_path_factory.mktemp("voc_synth")
    voc_root = write_synthetic_voc(
        str(out),
        num_train=SYNTH_SIZES["train"],
        num_val=SYNTH_SIZES["val"],
        seed=SYNTH_SEED,
        long_side=SYNTH_LONG_SIDE,
        workers=0,
    )
    register_synthetic_voc(voc_root)
    return voc_root


@pytest.fixture
def one_thread():
    """Runs the test on one intra-op thread, then restores the previous count."""
    # Small layers gain nothing from a second thread, and threads spinning for work make
    # tests many times slower when other processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
