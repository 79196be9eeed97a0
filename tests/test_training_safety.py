"""
tools/train_net.py on a user's path: output folders, exact resume after kill -9, corrupt
checkpoints, divergence, AMP, CPU multi-process with every VOC config, option order.
"""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from detectron2.engine import AMPTrainer, SimpleTrainer, launch
from detectron2.layers import NaiveSyncBatchNorm
from detectron2.utils.events import EventStorage

from atto_detectron.checkpoint import (
    AtomicCheckpointer,
    CheckpointError,
    CheckpointMismatchError,
    unhealthy_tensors,
)
from atto_detectron.config import load_config
from atto_detectron.engine import (
    OutputDirError,
    StopOnDivergence,
    TrainingDiverged,
    exclusive_output_dir,
    parse_args_any_order,
    runs,
)
from atto_detectron.tools import train_net

from .helpers import (
    CONFIGS,
    REPO_ROOT,
    SYNTH_DATASETS,
    leave_process_group,
    register_synthetic_voc,
)

SYNTH_CONFIG = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")
TRAIN, VAL = SYNTH_DATASETS["train"], SYNTH_DATASETS["val"]
# Small images keep a training iteration well under a second.
SMALL_INPUTS = [
    "INPUT.MIN_SIZE_TRAIN",
    "(96, 128)",
    "INPUT.MAX_SIZE_TRAIN",
    "128",
    "INPUT.MIN_SIZE_TEST",
    "128",
    "INPUT.MAX_SIZE_TEST",
    "128",
]
VOC_CONFIGS = [
    "atto_maskrcnn_voc.yaml",
    "atto_maskrcnn_voc_B.yaml",
    "atto_maskrcnn_voc_C.yaml",
    "atto_maskrcnn_voc_D.yaml",
    "atto_maskrcnn_voc_fast.yaml",
    "mask_rcnn_R_50_FPN_voc.yaml",
    "atto_maskrcnn_voc_d2heads.yaml",
    "mask_rcnn_mobilenet_v2_FPN_voc.yaml",
    "mask_rcnn_shufflenet_v2_FPN_voc.yaml",
]


def _argv(output_dir, *options, config=SYNTH_CONFIG, max_iter=12, period=3, overrides=()):
    # The options go after the overrides, as users type them.
    overrides = (
        [
            "DATASETS.TRAIN",
            f"('{TRAIN}',)",
            "DATASETS.TEST",
            f"('{VAL}',)",
            "SOLVER.MAX_ITER",
            str(max_iter),
            "SOLVER.CHECKPOINT_PERIOD",
            str(period),
            "SOLVER.WARMUP_ITERS",
            "2",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.BASE_LR",
            "0.01",
            "DATALOADER.NUM_WORKERS",
            "0",
            "TEST.EVAL_PERIOD",
            "0",
            "SEED",
            "1",
            "OUTPUT_DIR",
            str(output_dir),
        ]
        + SMALL_INPUTS
        + (["MODEL.ATTONET.VARIANT", "D"] if config == SYNTH_CONFIG else [])
        + list(overrides)
    )
    return ["--config-file", config] + overrides + list(options)


def _args(output_dir, *options, **kwargs):
    return train_net.parse_args(_argv(output_dir, *options, **kwargs))


def _train(args):
    """What train_net.main does, without the final evaluation."""
    trainer = train_net.AttoTrainer(runs.setup(args))
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return trainer


def _weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _iterations(output_dir, partial=False):
    """The iterations of metrics.json; ``partial``: of a file being written, maybe not yet."""
    path = os.path.join(output_dir, "metrics.json")
    if partial and not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().splitlines()
    if partial:
        lines = [line for line in lines[:-1]]  # the last line may be half-written
    return [json.loads(line)["iteration"] for line in lines]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def checkpointer_log():
    # fvcore's logger does not propagate to the root logger once Detectron2 set it up.
    handler = _Records()
    logger = logging.getLogger("fvcore.common.checkpoint")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


# ---------------------------------------------------------------- command line


def test_options_may_follow_the_overrides():
    args = train_net.parse_args(
        [
            "--config-file",
            "c.yaml",
            "SOLVER.BASE_LR",
            "0.1",
            "--resume",
            "SEED",
            "-1",
            "--num-gpus",
            "2",
            "--eval-only",
        ]
    )
    assert args.resume and args.eval_only and args.num_gpus == 2
    assert args.config_file == "c.yaml"
    assert args.opts == ["SOLVER.BASE_LR", "0.1", "SEED", "-1"]
    # argparse's unique prefixes ("--config" for --config-file) work after them too.
    late = train_net.parse_args(["SOLVER.BASE_LR", "0.1", "--config", "c.yaml", "--res"])
    assert late.config_file == "c.yaml" and late.resume
    assert late.opts == ["SOLVER.BASE_LR", "0.1"]


def test_an_unknown_option_among_the_overrides_is_an_error(capsys):
    with pytest.raises(SystemExit):
        train_net.parse_args(["--config-file", "c.yaml", "SOLVER.BASE_LR", "0.1", "--resumee"])
    assert "unknown option '--resumee'" in capsys.readouterr().err


def test_a_required_option_may_follow_the_overrides(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", nargs="+")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER)
    args = parse_args_any_order(
        parser, ["--opts", "A", "1", "--config-file", "c.yaml", "--input", "x", "y"]
    )
    assert (args.config_file, args.input, args.opts) == ("c.yaml", ["x", "y"], ["A", "1"])
    with pytest.raises(SystemExit):
        parse_args_any_order(parser, ["--opts", "A", "1"])
    assert "required: --config-file" in capsys.readouterr().err


# ---------------------------------------------------------------- output folders


def test_a_second_run_in_the_same_output_dir_stops_at_once(synthetic_voc, tmp_path):
    with exclusive_output_dir(str(tmp_path)):
        in_use = f"{re.escape(str(tmp_path))} is in use by another run .*pid {os.getpid()}"
        with pytest.raises(OutputDirError, match=in_use):
            train_net.main(_args(tmp_path))
    assert not (tmp_path / "config.yaml").exists()


def test_a_new_run_does_not_overwrite_an_earlier_one(synthetic_voc, tmp_path):
    (tmp_path / "metrics.json").write_text('{"iteration": 0}\n')
    with pytest.raises(OutputDirError, match="holds an earlier run .*metrics.json.*--resume"):
        train_net.main(_args(tmp_path))
    assert (tmp_path / "metrics.json").read_text() == '{"iteration": 0}\n'
    assert not (tmp_path / "config.yaml").exists()


@pytest.mark.slow
def test_resume_refuses_another_models_checkpoint(synthetic_voc, tmp_path):
    _train(_args(tmp_path, max_iter=2, period=1))  # AttoNet-D
    config_yaml = (tmp_path / "config.yaml").read_text()
    args = _args(tmp_path, "--resume", overrides=["MODEL.ATTONET.VARIANT", "A"])
    with pytest.raises(CheckpointMismatchError) as error:
        train_net.main(args)
    message = str(error.value)
    assert SYNTH_CONFIG in message and str(tmp_path / "model_final.pth") in message
    assert "with other shapes" in message and "own OUTPUT_DIR" in message
    assert (tmp_path / "config.yaml").read_text() == config_yaml


def test_resume_with_another_freeze_at_is_refused_before_anything_is_written(
    synthetic_voc, tmp_path
):
    _train(_args(tmp_path, max_iter=2, period=1))  # FREEZE_AT 0: everything trains

    def written():  # every file but the folder's lock, which each start takes
        return {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != "run.lock"}

    before = written()
    args = _args(tmp_path, "--resume", overrides=["MODEL.BACKBONE.FREEZE_AT", "2"])
    with pytest.raises(CheckpointMismatchError) as error:
        train_net.main(args)
    message = str(error.value)
    assert "MODEL.BACKBONE.FREEZE_AT" in message and "model_final.pth" in message
    assert re.search(r"trained with \d+ trainable parameter tensors", message)
    assert written() == before


def test_eval_only_needs_weights_unless_allowed(tmp_path):
    with pytest.raises(OutputDirError, match="MODEL.WEIGHTS .*--allow-random-weights"):
        runs.load_run_config(_args(tmp_path, "--eval-only"))
    cfg = runs.load_run_config(_args(tmp_path, "--eval-only", "--allow-random-weights"))
    assert cfg.MODEL.WEIGHTS == "" and cfg.OUTPUT_DIR == str(tmp_path)


def test_eval_only_keeps_out_of_a_training_runs_files(tmp_path):
    (tmp_path / "model_0000009.pth").write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    cfg = runs.load_run_config(_args(tmp_path, "--eval-only", "--resume"))
    assert cfg.MODEL.WEIGHTS == str(tmp_path / "model_0000009.pth")
    assert cfg.OUTPUT_DIR == str(tmp_path / "eval_model_0000009")


# ---------------------------------------------------------------- exact resume


# The resume tests keep a weight average too: it must resume exactly as the weights do.
EMA = ["MODEL_EMA.ENABLED", "True", "MODEL_EMA.DECAY", "0.7"]


def _ema_weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.ema.state_dict().items()}


@pytest.fixture(scope="module")
def uninterrupted(synthetic_voc, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    trainer = _train(_args(output_dir, overrides=EMA))
    return output_dir, _weights(trainer), _ema_weights(trainer)


def _run_killed(output_dir, voc_root, kill_after_iteration):
    """tools/train_net.py in a child process, killed with SIGKILL during training."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.helpers import register_synthetic_voc;"
        "register_synthetic_voc(sys.argv[2]);"
        "from atto_detectron.tools import train_net;"
        "train_net.main(train_net.parse_args(sys.argv[3:]))"
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    child = subprocess.Popen(
        [sys.executable, "-c", script, REPO_ROOT, voc_root] + _argv(output_dir, overrides=EMA),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        if any(i >= kill_after_iteration for i in _iterations(output_dir, partial=True)):
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert child.wait() == -signal.SIGKILL, "the training process ended before it was killed"


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_weights(synthetic_voc, uninterrupted, tmp_path):
    expected_dir, expected, expected_ema = uninterrupted
    _run_killed(tmp_path, synthetic_voc, kill_after_iteration=6)
    with open(tmp_path / "last_checkpoint") as f:
        assert f.read() == "model_0000005.pth"  # checkpoints at 2, 5 (period 3)
    assert max(_iterations(tmp_path)) >= 6  # metrics past the checkpoint

    trainer = _train(_args(tmp_path, "--resume", overrides=EMA))
    assert trainer.start_iter == 6
    resumed = _weights(trainer)
    assert resumed.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(resumed[name], value), name
    resumed_ema = _ema_weights(trainer)
    assert resumed_ema.keys() == expected_ema.keys() and int(resumed_ema["n_averaged"]) == 12
    for name, value in expected_ema.items():
        assert torch.equal(resumed_ema[name], value), name
    iterations = _iterations(tmp_path)
    assert iterations == sorted(set(iterations)) == _iterations(expected_dir)


@pytest.mark.slow
def test_a_corrupt_last_checkpoint_falls_back_to_the_previous_one(
    synthetic_voc, uninterrupted, tmp_path, checkpointer_log
):
    expected_dir, expected, _ = uninterrupted
    # The uninterrupted run's checkpoints at 2 and 5, with the one at 5 cut to 0 bytes.
    for name in ("model_0000002.pth", "model_0000005.pth", "metrics.json"):
        shutil.copy(expected_dir / name, tmp_path / name)
    (tmp_path / "model_0000005.pth").write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text("model_0000005.pth")

    trainer = _train(_args(tmp_path, "--resume", overrides=EMA))
    assert trainer.start_iter == 3
    warnings = [m for m in checkpointer_log if "cannot be read" in m]
    assert len(warnings) == 1
    assert "model_0000005.pth" in warnings[0] and "model_0000002.pth" in warnings[0]
    for name, value in expected.items():
        assert torch.equal(_weights(trainer)[name], value), name


def _tiny_checkpointer(folder):
    return AtomicCheckpointer(nn.Linear(3, 2), str(folder))


def test_truncated_checkpoints_fall_back_and_name_the_files(tmp_path, checkpointer_log):
    checkpointer = _tiny_checkpointer(tmp_path)
    checkpointer.save("model_0000001", iteration=1)
    checkpointer.save("model_0000002", iteration=2)
    second = tmp_path / "model_0000002.pth"
    second.write_bytes(second.read_bytes()[: second.stat().st_size // 2])
    assert _tiny_checkpointer(tmp_path).resume_or_load("")["iteration"] == 1
    assert any(str(second) in m and "model_0000001.pth" in m for m in checkpointer_log)

    (tmp_path / "model_0000001.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="No checkpoint .* can be read"):
        _tiny_checkpointer(tmp_path).resume_or_load("")


def test_last_checkpoint_cannot_point_outside_its_folder(tmp_path):
    (tmp_path / "last_checkpoint").write_text("../elsewhere/model_final.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint file in"):
        _tiny_checkpointer(tmp_path).resume_or_load("")


# ---------------------------------------------------------------- divergence


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 5e3])
def test_unhealthy_weights_are_never_checkpointed(tmp_path, value):
    checkpointer = _tiny_checkpointer(tmp_path)
    checkpointer.save("model_0000001")
    with torch.no_grad():
        checkpointer.model.weight[0, 0] = value
    checkpointer.save("model_0000002")
    assert not (tmp_path / "model_0000002.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"


def test_the_newest_healthy_checkpoint_skips_exploded_and_unreadable_ones(tmp_path):
    checkpointer = _tiny_checkpointer(tmp_path)
    checkpointer.save("model_0000001")
    # Written by other code: exploded weights (finite), then a truncated file.
    state = {k: v * 1e6 for k, v in checkpointer.model.state_dict().items()}
    torch.save({"model": state}, tmp_path / "model_0000002.pth")
    (tmp_path / "model_0000003.pth").write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text("model_0000003.pth")
    assert checkpointer.newest_healthy_checkpoint() == str(tmp_path / "model_0000001.pth")
    assert unhealthy_tensors(state)[0] == (
        f"weight: |value| {state['weight'].abs().max().item():.3g} > 1000"
    )
    # BN statistics may be larger than parameters, up to their own bound.
    assert not unhealthy_tensors({"bn.running_var": torch.full((3,), 5e4)})
    assert unhealthy_tensors({"bn.running_var": torch.full((3,), 2.6e22)})


@pytest.mark.slow
def test_a_diverging_learning_rate_stops_at_the_last_healthy_checkpoint(synthetic_voc, tmp_path):
    # At this learning rate the boxes of the RPN become infinite within a few steps;
    # Detectron2's own check raises there, inside the forward pass.
    args = _args(tmp_path, max_iter=30, period=1, overrides=["SOLVER.BASE_LR", "1000.0"])
    with pytest.raises(TrainingDiverged, match="Training diverged at iteration") as error:
        train_net.main(args)
    last = (tmp_path / "last_checkpoint").read_text()
    assert f"Last healthy checkpoint: {tmp_path / last}." in str(error.value)
    assert "SOLVER.BASE_LR" in str(error.value)
    saved = torch.load(tmp_path / last, weights_only=True)["model"]
    assert not unhealthy_tensors(saved)
    # Finite is not enough: the weights of the steps before the boxes became infinite
    # had exploded, and no checkpoint of them was written.
    assert all(v.abs().max() < 100 for v in saved.values() if v.is_floating_point())


@pytest.mark.slow
def test_divergence_on_the_command_line_is_one_message(synthetic_voc, tmp_path):
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.helpers import register_synthetic_voc;"
        "register_synthetic_voc(sys.argv[2]);"
        "from atto_detectron.tools import train_net; train_net.cli(sys.argv[3:])"
    )
    argv = _argv(tmp_path, max_iter=30, period=1, overrides=["SOLVER.BASE_LR", "1000.0"])
    result = subprocess.run(
        [sys.executable, "-c", script, REPO_ROOT, synthetic_voc] + argv,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: Training diverged at iteration")
    assert "Last healthy checkpoint:" in last_line


class _ToyDetector(nn.Module):
    """A model with Detectron2's training interface: a list of inputs -> a loss dict."""

    def __init__(self, loss_scale=1.0):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.loss_scale = loss_scale

    def forward(self, batch):
        return {"loss": self.layer(torch.stack(batch)).pow(2).mean() * self.loss_scale}


def _toy_trainer(model, trainer_class, **kwargs):
    data = iter(lambda: [torch.ones(4), torch.full((4,), 2.0)], None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    trainer = trainer_class(model, data, optimizer, **kwargs)
    trainer.register_hooks([StopOnDivergence(model, optimizer)])
    return trainer


def test_without_amp_infinite_gradients_stop_the_run():
    model = _ToyDetector(loss_scale=3e38)  # finite loss, infinite gradients
    trainer = _toy_trainer(model, SimpleTrainer)
    trainer.iter = 0
    with EventStorage(0), pytest.raises(TrainingDiverged, match="gradients became NaN"):
        trainer.run_step()


def test_with_amp_an_overflowing_scaler_skips_steps_and_training_goes_on(monkeypatch):
    # GradScaler's first steps overflow at this scale: it skips them and halves the scale.
    # AMPTrainer requires CUDA; on CPU autocast for CUDA is off and the scaler is a CPU one.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = _ToyDetector()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    trainer = _toy_trainer(model, AMPTrainer, grad_scaler=scaler)
    initial = model.layer.weight.detach().clone()
    with EventStorage(0) as storage:
        for trainer.iter in range(8):
            storage.iter = trainer.iter
            trainer.run_step()
            if trainer.iter == 0:  # overflowed: skipped, not stopped
                assert torch.equal(model.layer.weight, initial)
    assert scaler.get_scale() < 2.0**127
    assert not torch.equal(model.layer.weight, initial)  # later steps were taken
    assert torch.isfinite(model.layer.weight).all()


def test_with_amp_a_non_finite_loss_still_stops_the_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = _ToyDetector(loss_scale=float("nan"))
    trainer = _toy_trainer(model, AMPTrainer, grad_scaler=torch.amp.GradScaler("cpu"))
    trainer.iter = 0
    with EventStorage(0), pytest.raises(TrainingDiverged, match="loss became NaN"):
        trainer.run_step()


def _diverge_on_one_process_worker(output_dir):
    from torch.nn.parallel import DistributedDataParallel

    from detectron2.utils import comm

    torch.set_num_threads(1)
    # Only process 1's loss is NaN, at iteration 3.
    model = _ToyDetector(loss_scale=1.0)
    ddp = DistributedDataParallel(model, device_ids=None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
    data = iter(lambda: [torch.ones(4), torch.full((4,), 2.0)], None)
    trainer = SimpleTrainer(ddp, data, optimizer)
    trainer.register_hooks([StopOnDivergence(ddp, optimizer)])
    stopped_at = None
    with EventStorage(0) as storage:
        try:
            for trainer.iter in range(6):
                storage.iter = trainer.iter
                if trainer.iter == 3 and comm.get_rank() == 1:
                    model.loss_scale = float("nan")
                trainer.run_step()
        except TrainingDiverged as e:
            stopped_at = (trainer.iter, str(e))
    with open(os.path.join(output_dir, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump(stopped_at, f)
    del trainer, ddp
    leave_process_group()


@pytest.mark.slow
def test_a_non_finite_loss_in_one_process_stops_every_process_at_that_iteration(tmp_path):
    launch(_diverge_on_one_process_worker, 2, dist_url="auto", args=(str(tmp_path),))
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0[0] == rank1[0] == 3
    assert "loss became NaN" in rank1[1]
    assert "the loss of another process became NaN" in rank0[1]


@pytest.mark.slow
@pytest.mark.cuda
def test_amp_training_on_a_gpu_is_not_stopped(synthetic_voc, tmp_path):
    args = _args(
        tmp_path,
        max_iter=40,
        period=100,
        overrides=["MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", "True"],
    )
    trainer = _train(args)
    assert trainer.iter == 40
    assert all(torch.isfinite(v).all() for v in _weights(trainer).values() if v.is_floating_point())


# ---------------------------------------------------------------- CPU multi-process


def test_syncbn_becomes_naive_syncbn_on_cpu_with_a_log_line(caplog):
    path = os.path.join(CONFIGS, "atto_maskrcnn_voc.yaml")
    with caplog.at_level(logging.INFO, logger="atto_detectron.config"):
        cfg = load_config(path, device="cpu")
    assert cfg.MODEL.ATTONET.NORM == "naiveSyncBN"
    assert "MODEL.ATTONET.NORM: SyncBN needs GPUs; on CPU it is naiveSyncBN." in caplog.messages
    assert load_config(path, ["MODEL.ATTONET.NORM", "GN"], device="cpu").MODEL.ATTONET.NORM == "GN"


@pytest.mark.slow
def test_the_syncbn_mapping_is_in_the_runs_log_txt(synthetic_voc, tmp_path):
    config = os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml")
    train_net.main(_args(tmp_path / "run", config=config, max_iter=1, period=1))
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "MODEL.ATTONET.NORM is naiveSyncBN: on CPU, SyncBN runs as" in log


def _voc_configs_worker(output_dir, voc_root):
    register_synthetic_voc(voc_root)
    from detectron2.utils import comm

    train_net.set_cpu_threads()
    for name in VOC_CONFIGS:
        folder = os.path.join(output_dir, name)
        args = _args(
            folder, "--num-gpus", "2", config=os.path.join(CONFIGS, name), max_iter=2, period=100
        )
        trainer = _train(args)
        model = trainer.model.module
        weights = {k: v.detach().clone() for k, v in model.named_parameters()}
        syncbn = sum(isinstance(m, NaiveSyncBatchNorm) for m in model.modules())
        torch.save(
            {"iter": trainer.iter, "weights": weights, "syncbn": syncbn},
            os.path.join(folder, f"rank{comm.get_rank()}.pth"),
        )


@pytest.mark.slow
def test_every_voc_config_trains_in_two_cpu_processes(synthetic_voc, tmp_path):
    launch(_voc_configs_worker, 2, dist_url="auto", args=(str(tmp_path), synthetic_voc))
    for name in VOC_CONFIGS:
        rank0 = torch.load(tmp_path / name / "rank0.pth")
        rank1 = torch.load(tmp_path / name / "rank1.pth")
        assert rank0["iter"] == rank1["iter"] == 2, name
        assert rank0["syncbn"] > 0, name  # the configs' SyncBN, all-reduced over Gloo
        for key, value in rank0["weights"].items():
            assert torch.equal(rank1["weights"][key], value), (name, key)
