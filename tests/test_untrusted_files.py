"""
Files the project reads never run code: each crafted file below would create a marker
file if anything executed what it names; loading must fail, naming the file, and leave
no marker.
"""

import json
import os
import pickle
import re

import pytest
import torch

from detectron2.config.instantiate import dump_dataclass
from detectron2.export.flatten import flatten_to_tuple
from detectron2.structures import Boxes, Instances

from atto_detectron.checkpoint import AtomicCheckpointer, CheckpointError
from atto_detectron.classification.convert import convert_classifier_checkpoint
from atto_detectron.config import load_config
from atto_detectron.deploy import ExportedModel
from atto_detectron.deploy.export import INFO_FILE, load_outputs_schema
from atto_detectron.tools import convert_classifier_to_d2, export_model
from atto_detectron.visualization import VisualizationPredictor

from design_exploration import (
    CLASSIFIER_LAYOUT,
    STATE_FILE,
    CandidateEvaluator,
    DesignExplorer,
    DesignRequirements,
    ExplorerSettings,
    SearchBudget,
    get_prototype,
)

from .helpers import CONFIGS, SYNTH_DATASETS


class _OpensMarker:
    """Unpickling this calls ``open(marker, "w")``, which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "code_ran"
    yield path
    assert not path.exists(), "a crafted file ran code"


# ---------------------------------------------------------------- classifier checkpoints


def _crafted_checkpoints(folder, marker):
    """A torch.save file and a plain pickle, each with a 'model' that opens ``marker``."""
    saved, pickled = folder / "torch_save.pth", folder / "pickle_dump.pth"
    torch.save({"model": {"backbone.stem.conv1.weight": _OpensMarker(marker)}}, saved)
    with open(pickled, "wb") as f:
        pickle.dump({"model": _OpensMarker(marker)}, f)
    return [str(saved), str(pickled)]


def test_classifier_checkpoint_with_python_objects_is_not_unpickled(tmp_path, marker):
    output = tmp_path / "backbone.pkl"
    for path in _crafted_checkpoints(tmp_path, marker):
        with pytest.raises(
            CheckpointError, match=re.escape(f"{path} holds Python objects other than")
        ):
            convert_classifier_checkpoint(path, str(output))
        with pytest.raises(SystemExit, match=re.escape(f"error: {path} holds Python objects")):
            convert_classifier_to_d2.main([path, str(output)])
    assert not output.exists()


def test_export_tool_does_not_unpickle_model_weights(tmp_path, marker):
    weights = _crafted_checkpoints(tmp_path, marker)[0]
    argv = [
        "--config-file",
        os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml"),
        "--output",
        str(tmp_path / "export"),
        "MODEL.WEIGHTS",
        weights,
    ]
    with pytest.raises(SystemExit, match=re.escape(f"{weights} holds Python objects")):
        export_model.main(argv)
    assert not (tmp_path / "export").exists()


# ---------------------------------------------------------------- export folders


def _export_folder(folder, schema, **info):
    folder.mkdir()
    record = {"format": "torchscript", "method": "tracing", "backbone_only": False}
    record.update(info, outputs_schema=schema)
    (folder / INFO_FILE).write_text(json.dumps(record))
    return str(folder / INFO_FILE)


def _genuine_schema():
    """What export_model writes for a detector: list > dict > Instances > Boxes, tensors."""
    instances = Instances((4, 5), pred_boxes=Boxes(torch.rand(2, 4)), scores=torch.rand(2))
    return flatten_to_tuple([{"instances": instances}])[1]


def test_genuine_outputs_schema_is_rebuilt():
    schema = _genuine_schema()
    assert load_outputs_schema(dump_dataclass(schema), "export_info.json") == schema


def _opens_marker(marker):
    return {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


@pytest.mark.parametrize("where", ["top", "nested", "class_name", "sizes"])
def test_export_info_naming_other_classes_is_refused(tmp_path, marker, where):
    schema = dump_dataclass(_genuine_schema())
    instances = schema["schemas"][0]["schemas"][0]
    if where == "top":
        schema = _opens_marker(marker)
        found = "outputs_schema names 'builtins.open' as '_target_'"
    elif where == "nested":
        instances["schemas"][1] = _opens_marker(marker)  # "scores"
        found = "outputs_schema.schemas[0].schemas[0].schemas[1] names 'builtins.open'"
    elif where == "class_name":
        instances["schemas"][0]["class_name"] = "builtins.exec"  # "pred_boxes"
        found = (
            "outputs_schema.schemas[0].schemas[0].schemas[0] names 'builtins.exec' as 'class_name'"
        )
    else:
        instances["sizes"][0] = _opens_marker(marker)
        found = "outputs_schema.schemas[0].schemas[0] has 'sizes' [{"
    info_path = _export_folder(tmp_path / "export", schema)
    with pytest.raises(ValueError, match=re.escape(f"{info_path}: {found}")):
        ExportedModel(str(tmp_path / "export"))


def test_export_info_with_a_model_path_is_refused(tmp_path):
    info_path = _export_folder(tmp_path / "export", None, format="../../model.ts")
    with pytest.raises(ValueError, match=re.escape(f"{info_path}: format '../../model.ts'")):
        ExportedModel(str(tmp_path / "export"))


# ---------------------------------------------------------------- design search states


class _NoTraining(CandidateEvaluator):
    task = "classification"
    accuracy_name = "top-1"
    layout = CLASSIFIER_LAYOUT
    input_size = (32, 32)

    def settings(self):
        return {}

    def evaluate(self, *args, **kwargs):
        raise AssertionError("the search reached training: its state was not refused")


def _explorer(output, resume=False):
    return DesignExplorer(
        _NoTraining(),
        get_prototype("uniform", base_width=16),
        DesignRequirements(),
        str(output),
        ExplorerSettings(population=1, num_elite=1),
        resume=resume,
    )


def _write_search(output, weights):
    """A saved search whose prototype (candidate 0) has the weights file ``weights``."""
    explorer = _explorer(output)
    prototype = explorer.prototype
    explorer.candidates.append(
        {
            "id": 0,
            "name": prototype.name,
            "generator": None,
            "parent": None,
            "draws": 0,
            "repairs": 0,
            "schedule": "scratch",
            "spec": prototype.to_dict(),
            "spec_file": os.path.join("candidates", "0000.yaml"),
            "weights": weights,
            "accuracy": 50.0,
            "params": 1,
            "mult_adds": 1,
            "latency_ms": None,
            "netscore": 1.0,
            "score": 1.0,
            "met": {},
            "violation": 0.0,
            "feasible": True,
            "metrics": {},
            "seconds": 0.0,
        }
    )
    explorer._save_state()
    return os.path.join(str(output), STATE_FILE)


@pytest.mark.parametrize("kind", ["parent", "absolute", "link"])
def test_search_state_naming_a_file_outside_its_folder_is_refused(tmp_path, marker, kind):
    outside = tmp_path / "outside.pth"
    torch.save({"weights": _OpensMarker(marker)}, outside)
    output = tmp_path / "search"
    weights = {"parent": "../outside.pth", "absolute": str(outside), "link": "link.pth"}[kind]
    state_path = _write_search(output, weights)
    if kind == "link":
        os.symlink(outside, output / "link.pth")
    with pytest.raises(ValueError, match=re.escape(f"{state_path} names the file '{weights}'")):
        _explorer(output, resume=True).run(SearchBudget(candidates=1), progress=False)
    assert outside.exists(), "the file outside the search's folder was deleted"


def test_search_weights_with_python_objects_are_not_unpickled(tmp_path, marker):
    output = tmp_path / "search"
    _write_search(output, os.path.join("candidates", "0000.pth"))
    weights = output / "candidates" / "0000.pth"
    weights.parent.mkdir()
    torch.save({"stem.conv1.weight": _OpensMarker(marker)}, weights)
    # Candidate 1 inherits the prototype's weights: loading them must fail.
    with pytest.raises(CheckpointError, match=re.escape(f"{weights} holds Python objects")):
        _explorer(output, resume=True).run(SearchBudget(candidates=1), progress=False)


# ---------------------------------------------------------------- configs


def test_config_with_a_python_tag_is_refused(tmp_path, marker):
    tag = f'!!python/object/apply:builtins.open ["{marker}", "w"]'
    direct = tmp_path / "direct.yaml"
    direct.write_text(f"MODEL:\n  WEIGHTS: {tag}\n")
    base = tmp_path / "base.yaml"
    base.write_text(f"OUTPUT_DIR: {tag}\n")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 1\n")
    with pytest.raises(
        ValueError,
        match=f"{re.escape(str(direct))} .*would run Python code.*{re.escape(str(direct))}",
    ):
        load_config(str(direct))
    # The message names the file given and, in the YAML error's position, the base file.
    with pytest.raises(
        ValueError, match=f"{re.escape(str(child))} .*_BASE_.*{re.escape(str(base))}"
    ):
        load_config(str(child))


# ---------------------------------------------------------------- training and demo weights


def test_a_crafted_last_checkpoint_is_not_resumed_from(tmp_path, marker):
    with open(tmp_path / "model_final.pth", "wb") as f:
        pickle.dump({"model": _OpensMarker(marker)}, f)
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    checkpointer = AtomicCheckpointer(torch.nn.Linear(3, 2), str(tmp_path))
    with pytest.raises(CheckpointError, match="model_final.pth holds Python objects"):
        checkpointer.resume_or_load("")


def test_the_demo_does_not_unpickle_its_weights(tmp_path, marker):
    weights = _crafted_checkpoints(tmp_path, marker)[0]
    cfg = load_config(
        os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml"), ["MODEL.WEIGHTS", weights], device="cpu"
    )
    with pytest.raises(CheckpointError, match="torch_save.pth holds Python objects"):
        VisualizationPredictor(cfg)


def _crafted_pyth(path, marker):
    torch.save({"model_state": {"stem.conv.weight": _OpensMarker(marker)}}, path)
    return str(path)


def test_a_pycls_pyth_file_is_read_weights_only(tmp_path, marker):
    weights = _crafted_pyth(tmp_path / "crafted.pyth", marker)
    with pytest.raises(CheckpointError, match="crafted.pyth holds Python objects"):
        AtomicCheckpointer(torch.nn.Linear(3, 2)).load(weights)
    # A genuine one loads, converted as Detectron2 converts pycls checkpoints.
    model = torch.nn.Linear(3, 2)
    state = {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}
    torch.save({"model_state": state, "epoch": 3}, tmp_path / "genuine.pyth")
    AtomicCheckpointer(model).load(str(tmp_path / "genuine.pyth"))
    assert torch.equal(model.weight, state["weight"])
    torch.save({"weights": state}, tmp_path / "other.pyth")
    with pytest.raises(CheckpointError, match="other.pyth: .*'model_state'"):
        AtomicCheckpointer(model).load(str(tmp_path / "other.pyth"))


def test_a_last_checkpoint_naming_a_pyth_file_is_not_unpickled(tmp_path, marker):
    _crafted_pyth(tmp_path / "model_0000009.pyth", marker)
    (tmp_path / "last_checkpoint").write_text("model_0000009.pyth")
    checkpointer = AtomicCheckpointer(torch.nn.Linear(3, 2), str(tmp_path))
    with pytest.raises(CheckpointError, match="model_0000009.pyth holds Python objects"):
        checkpointer.check_resumable()
    with pytest.raises(CheckpointError, match="model_0000009.pyth holds Python objects"):
        checkpointer.resume_or_load("")


@pytest.mark.parametrize("tool", ["train", "eval-only", "demo"])
def test_no_tool_unpickles_pyth_weights(synthetic_voc, tmp_path, marker, tool):
    weights = _crafted_pyth(tmp_path / "weights.pyth", marker)
    config = os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml")
    if tool == "demo":
        cfg = load_config(config, ["MODEL.WEIGHTS", weights], device="cpu")
        with pytest.raises(CheckpointError, match="weights.pyth holds Python objects"):
            VisualizationPredictor(cfg)
        return
    from atto_detectron.tools import train_net

    argv = ["--config-file", config, "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu"]
    argv += ["OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_ITER", "1"]
    argv += ["DATASETS.TRAIN", f"('{SYNTH_DATASETS['train']}',)"]
    argv += ["DATASETS.TEST", f"('{SYNTH_DATASETS['val']}',)"]
    argv += ["--eval-only"] if tool == "eval-only" else []
    with pytest.raises(CheckpointError, match="weights.pyth holds Python objects"):
        train_net.main(train_net.parse_args(argv))


def test_a_crafted_pkl_is_refused_and_a_genuine_one_loads(tmp_path, marker):
    import numpy as np

    with open(tmp_path / "crafted.pkl", "wb") as f:
        pickle.dump({"model": {"weight": _OpensMarker(marker)}, "__author__": "x"}, f)
    with pytest.raises(CheckpointError, match="crafted.pkl holds Python objects"):
        AtomicCheckpointer(torch.nn.Linear(3, 2)).load(str(tmp_path / "crafted.pkl"))
    # Detectron2's model-zoo format: numpy arrays in a dict.
    state = {"weight": np.full((2, 3), 0.5, np.float32), "bias": np.zeros(2, np.float32)}
    with open(tmp_path / "genuine.pkl", "wb") as f:
        pickle.dump({"model": state, "__author__": "test", "matching_heuristics": False}, f)
    model = torch.nn.Linear(3, 2)
    AtomicCheckpointer(model).load(str(tmp_path / "genuine.pkl"))
    assert torch.equal(model.weight, torch.full((2, 3), 0.5))
