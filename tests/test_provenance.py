"""What results.json records about a run's code, machine and data."""

import json
import os

from detectron2.modeling import build_model

from atto_detectron.config import load_config
from atto_detectron.engine.provenance import (
    config_fingerprint,
    machine_description,
    model_fingerprint,
    source_fingerprint,
    training_speed,
)

from .helpers import CONFIGS

SYNTH_CONFIG = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")


def test_config_fingerprint_ignores_seed_and_folder_but_not_the_recipe():
    base = config_fingerprint(load_config(SYNTH_CONFIG))
    assert base == config_fingerprint(load_config(SYNTH_CONFIG, ["SEED", "3", "OUTPUT_DIR", "x"]))
    assert base != config_fingerprint(load_config(SYNTH_CONFIG, ["SOLVER.BASE_LR", "0.01"]))
    assert base != config_fingerprint(load_config(SYNTH_CONFIG, ["MODEL_EMA.ENABLED", "True"]))


def test_model_fingerprint_follows_the_built_network():
    def fingerprint(*opts):
        return model_fingerprint(build_model(load_config(SYNTH_CONFIG, list(opts), "cpu")))

    assert fingerprint() == fingerprint("SEED", "5")  # other random weights, same network
    assert fingerprint() != fingerprint("MODEL.ATTONET.VARIANT", "D")
    assert fingerprint() != fingerprint("MODEL.FPN.OUT_CHANNELS", "64")


def test_source_fingerprint_changes_with_any_python_file(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    (package / "notes.txt").write_text("not code")
    before = source_fingerprint(str(package))
    (package / "notes.txt").write_text("still not code")
    assert source_fingerprint(str(package)) == before
    (package / "sub" / "b.py").write_text("y = 3\n")
    assert source_fingerprint(str(package)) != before


def test_training_speed_is_the_median_of_the_recorded_times(tmp_path):
    path = tmp_path / "metrics.json"
    records = [{"iteration": i, "time": t} for i, t in ((19, 0.9), (39, 1.1), (59, 0.5))]
    records.append({"iteration": 59, "bbox/AP": 10.0})  # an evaluation record
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n{half-writ")
    assert training_speed(str(path)) == {"seconds_per_iteration": 0.9, "iterations": 60}
    assert training_speed(str(tmp_path / "none.json"))["seconds_per_iteration"] is None


def test_machine_description_names_the_cpu_and_its_kernels():
    machine = machine_description(threads=3)
    assert machine["threads"] == 3 and machine["cpu"]
    assert machine["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "NO AVX")
    assert set(machine["cpu_flags"]) <= {
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
    }
