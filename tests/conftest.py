import importlib.util
import os

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO_ROOT, "configs")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# The generated VOC-layout data the tests train and evaluate on (see synthetic_voc).
SYNTH_SEED = 0
SYNTH_SIZES = {"train": 8, "val": 8}
SYNTH_LONG_SIDE = 256
SYNTH_DATASETS = {"train": "synth_test_train", "val": "synth_test_val"}


def load_tool(name):
    """The module of ``tools/<name>.py`` (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO_ROOT, "tools", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def register_synthetic_voc(voc_root):
    """Registers the splits of ``voc_root`` as SYNTH_DATASETS (once per process)."""
    from detectron2.data import DatasetCatalog

    from atto_detectron.data import register_voc_instances

    for split, name in SYNTH_DATASETS.items():
        if name not in DatasetCatalog.list():
            cache = os.path.join(os.path.dirname(voc_root), "coco_json")
            register_voc_instances(name, voc_root, split, json_cache_dir=cache)


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
