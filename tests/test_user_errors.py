"""
Mistakes a user makes on tools/train_net.py's command line, config and output folder:
each is one line on stderr that names the key, file or folder and the fix, in one
process and from the processes of --num-gpus 2 alike.
"""

import errno
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from atto_detectron.checkpoint import AtomicCheckpointer, CheckpointWriteError
from atto_detectron.config import ConfigError, load_config
from atto_detectron.tools import train_net

from .helpers import CONFIGS, REPO_ROOT, SYNTH_DATASETS

SYNTH_CONFIG = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")


def _cli_error(capsys, *argv):
    """tools/train_net.py's cli in this process: the one line it exits with."""
    with pytest.raises(SystemExit) as exit_info:
        train_net.cli(["--config-file", SYNTH_CONFIG, *argv])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["SOLVER.BASE_LRR", "0.1"], r"SOLVER\.BASE_LRR is not a config key.*SOLVER\.BASE_LR"),
        (["SOLVER.BASE_LR", "1000"], r"SOLVER\.BASE_LR takes a float, not the int 1000.*1000\.0"),
        (["MODEL.ATTONET.VARIANT"], r"'MODEL\.ATTONET\.VARIANT' has no value"),
        (
            ["DATASETS.TRAIN", "('voc_synht_train',)"],
            r"DATASETS\.TRAIN: no dataset 'voc_synht_train'.*did you mean voc_synth_train",
        ),
    ],
)
def test_config_mistakes_are_one_line_naming_the_key(capsys, tmp_path, overrides, expected):
    message = _cli_error(capsys, "OUTPUT_DIR", str(tmp_path / "out"), *overrides)
    assert re.search(expected, message), message


def test_a_lazyconfig_or_broken_yaml_is_named(tmp_path):
    with pytest.raises(ConfigError, match="is a LazyConfig.*lazyconfig_train_net.py"):
        load_config(os.path.join(CONFIGS, "lazy", "atto_maskrcnn_voc.py"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("MODEL:\n  WEIGHTS: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml .*is not valid YAML"):
        load_config(str(broken))


def test_an_unusable_output_dir_is_named(capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    message = _cli_error(capsys, "OUTPUT_DIR", str(a_file))
    assert f"OUTPUT_DIR {a_file} cannot be used" in message and "not a file" in message
    assert a_file.read_text() == "mine"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "cannot be used" in _cli_error(capsys, "OUTPUT_DIR", str(locked / "run"))


@pytest.mark.parametrize("num_gpus", ["0", "-1"])
def test_no_processes_is_an_error(capsys, num_gpus):
    with pytest.raises(SystemExit):
        train_net.parse_args(["--config-file", SYNTH_CONFIG, "--num-gpus", num_gpus])
    assert "--num-gpus" in capsys.readouterr().err


def test_a_full_disk_while_checkpointing_names_the_file_and_keeps_the_last(tmp_path, monkeypatch):
    checkpointer = AtomicCheckpointer(nn.Linear(3, 2), str(tmp_path))
    checkpointer.save("model_0000001")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointWriteError) as error:
        checkpointer.save("model_0000002")
    message = str(error.value)
    assert str(tmp_path / "model_0000002.pth") in message and "No space left" in message
    assert "--resume" in message and "model_0000001.pth" in message
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert any(issubclass(CheckpointWriteError, c) for c in train_net.USER_ERRORS)


def test_resuming_past_max_iter_is_an_error_not_a_silent_exit(synthetic_voc, tmp_path, capsys):
    argv = [
        "DATASETS.TRAIN",
        f"('{SYNTH_DATASETS['train']}',)",
        "DATASETS.TEST",
        f"('{SYNTH_DATASETS['val']}',)",
        "MODEL.ATTONET.VARIANT",
        "D",
        "INPUT.MIN_SIZE_TRAIN",
        "(96,)",
        "INPUT.MAX_SIZE_TRAIN",
        "128",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.WARMUP_ITERS",
        "1",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "OUTPUT_DIR",
        str(tmp_path),
    ]
    trainer = train_net.AttoTrainer(load_config(SYNTH_CONFIG, argv + ["SOLVER.MAX_ITER", "4"]))
    trainer.resume_or_load(resume=False)
    trainer.train()
    message = _cli_error(capsys, "--resume", *argv, "SOLVER.MAX_ITER", "2")
    assert "is at iteration 4, past SOLVER.MAX_ITER 2" in message
    assert "--eval-only --resume" in message


def test_eval_only_resume_without_a_checkpoint_says_which_folder(capsys, tmp_path):
    message = _cli_error(capsys, "--eval-only", "--resume", "OUTPUT_DIR", str(tmp_path))
    assert f"OUTPUT_DIR {tmp_path} holds no checkpoint" in message
    assert "or --resume" not in message


@pytest.mark.slow
def test_a_config_mistake_in_two_processes_is_one_line_too(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "tools/train_net.py",
            "--config-file",
            SYNTH_CONFIG,
            "--num-gpus",
            "2",
            "SOLVER.BASE_LRR",
            "0.1",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: override: SOLVER.BASE_LRR is not a config key"), last


def test_an_unknown_variant_names_its_key(capsys, synthetic_voc, tmp_path):
    message = _cli_error(
        capsys,
        "MODEL.ATTONET.VARIANT",
        "Z",
        "DATASETS.TRAIN",
        f"('{SYNTH_DATASETS['train']}',)",
        "DATASETS.TEST",
        f"('{SYNTH_DATASETS['val']}',)",
        "OUTPUT_DIR",
        str(tmp_path),
    )
    assert message.startswith("error: MODEL.ATTONET.VARIANT: ") and "'Z'" in message
    assert "OUT_FEATURES" not in message
