"""atto_detectron.model_zoo: Detectron2's model_zoo API over this project's configs."""

import fnmatch
import glob
import os

import pytest
import torch
from omegaconf import DictConfig

from detectron2.config import CfgNode

from atto_detectron import model_zoo
from atto_detectron.model_zoo import model_zoo as model_zoo_module

from .helpers import CONFIGS

# These small models and inputs gain nothing from a second thread (see one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")

ZOO_CONFIGS = model_zoo.list_configs()


def _repository_model_configs():
    # Every yaml and LazyConfig of configs/ but the shared parts and the design explorer's
    # requirement files.
    names = {
        os.path.relpath(path, CONFIGS).replace(os.sep, "/")
        for pattern in ("**/*.yaml", "lazy/*.py")
        for path in glob.glob(os.path.join(CONFIGS, pattern), recursive=True)
    }
    shared = ("Base-*.yaml", "lazy/common.py", "design/*")
    return {n for n in names if not any(fnmatch.fnmatch(n, s) for s in shared)}


def test_the_zoo_lists_every_model_config_of_the_repository():
    assert set(ZOO_CONFIGS) == _repository_model_configs()
    assert {
        "atto_maskrcnn_voc.yaml",
        "atto_maskrcnn_voc_D.yaml",
        "synth/atto_maskrcnn_synth.yaml",
        "lazy/atto_maskrcnn_voc.py",
        "lazy/atto_maskrcnn_voc_D.py",
        "lazy/atto_maskrcnn_synth.py",
    } <= set(ZOO_CONFIGS)


@pytest.mark.parametrize("name", ZOO_CONFIGS)
def test_every_config_resolves_loads_and_builds(name):
    path = model_zoo.get_config_file(name)
    assert path.endswith(os.path.join(*name.split("/")))
    with open(path) as zoo_file, open(os.path.join(CONFIGS, name)) as repository_file:
        assert zoo_file.read() == repository_file.read()

    cfg = model_zoo.get_config(name)
    if name.endswith(".py"):
        assert isinstance(cfg, DictConfig) and {"model", "dataloader", "train"} <= set(cfg)
        num_classes = cfg.model.roi_heads.num_classes
    else:
        assert isinstance(cfg, CfgNode)
        num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES

    model = model_zoo.get(name, device="cpu")
    assert not model.training
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.roi_heads.num_classes == num_classes == 20


def test_yacs_configs_are_read_by_the_projects_loader(monkeypatch):
    calls = []

    def spy(path, *args, **kwargs):
        calls.append(path)
        return load_config(path, *args, **kwargs)

    load_config = model_zoo_module.load_config
    monkeypatch.setattr(model_zoo_module, "load_config", spy)
    cfg = model_zoo.get_config("synth/atto_maskrcnn_synth_B.yaml")
    assert calls == [model_zoo.get_config_file("synth/atto_maskrcnn_synth_B.yaml")]
    # The AttoNet keys, and the _BASE_ chain up to Base-AttoNet-FPN.yaml.
    assert cfg.MODEL.ATTONET.VARIANT == "B" and cfg.MODEL.FPN.OUT_CHANNELS == 96


@pytest.mark.parametrize("name", ["synth/atto_maskrcnn_synth.yaml", "lazy/atto_maskrcnn_synth.py"])
def test_get_builds_on_cuda_where_available_else_on_cpu(name):
    model = model_zoo.get(name)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert {p.device.type for p in model.parameters()} == {expected}
    with torch.no_grad():
        outputs = model([{"image": torch.rand(3, 64, 96, device=expected) * 255}])
    assert outputs[0]["instances"].image_size == (64, 96)


@pytest.mark.parametrize(
    "name, how_to_train, how_to_load",
    [
        (
            "atto_maskrcnn_voc.yaml",
            "python -m atto_detectron.tools.train_net --config-file ",
            "MODEL.WEIGHTS",
        ),
        (
            "lazy/atto_maskrcnn_voc.py",
            "lazyconfig_train_net.py --config-file configs/lazy/atto_maskrcnn_voc.py",
            "train.init_checkpoint=",
        ),
    ],
)
@pytest.mark.parametrize("function", [model_zoo.get_config, model_zoo.get])
def test_trained_weights_are_an_error_that_says_how_to_train_them(
    function, name, how_to_train, how_to_load
):
    with pytest.raises(RuntimeError, match="No trained weights are published") as error:
        function(name, trained=True)
    assert how_to_train in str(error.value)
    assert how_to_load in str(error.value)


@pytest.mark.parametrize(
    "function", [model_zoo.get_config_file, model_zoo.get_config, model_zoo.get]
)
def test_an_unknown_config_is_an_error_that_lists_the_zoo(function):
    with pytest.raises(RuntimeError, match="'atto_maskrcnn_vco.yaml' is not in") as error:
        function("atto_maskrcnn_vco.yaml")
    for name in ZOO_CONFIGS:
        assert name in str(error.value)


def test_paths_outside_the_configs_are_not_configs():
    assert os.path.isfile(os.path.join(CONFIGS, "..", "setup.py"))
    with pytest.raises(RuntimeError, match="is not in"):
        model_zoo.get_config_file("../setup.py")
