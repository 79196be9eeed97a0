"""tools/train_net.py: training, evaluation, resume, NaN guard, multi-process."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.engine import launch

from atto_detectron import add_attonet_config
from atto_detectron.engine import runs
from atto_detectron.tools import train_net

from .helpers import (
    CONFIGS,
    REPO_ROOT,
    SYNTH_DATASETS,
    SYNTH_SIZES,
    register_synthetic_voc,
)

SYNTH_CONFIG = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")
# Generated VOC-layout data, read by the VOC loader (the synthetic_voc fixture).
TRAIN, VAL = SYNTH_DATASETS["train"], SYNTH_DATASETS["val"]


def _args(output_dir, *extra, eval_only=False, resume=False, max_iter=12, period=4, num_gpus=1):
    argv = ["--config", SYNTH_CONFIG]
    if eval_only:
        argv.append("--eval-only")
    if resume:
        argv.append("--resume")
    argv += ["--num-gpus", str(num_gpus)]
    argv += [
        "DATASETS.TRAIN",
        f"('{TRAIN}',)",
        "DATASETS.TEST",
        f"('{VAL}',)",
        "MODEL.ATTONET.VARIANT",
        "D",
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
        "SEED",
        "1",
        "OUTPUT_DIR",
        str(output_dir),
    ] + list(extra)
    return train_net.get_parser().parse_args(argv)


def _metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def trained(synthetic_voc, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("train")
    results = train_net.main(_args(output_dir, max_iter=30, period=10))
    return output_dir, results


@pytest.mark.slow
def test_training_losses_are_finite_and_fall(trained):
    output_dir, _ = trained
    losses = [m["total_loss"] for m in _metrics(output_dir) if "total_loss" in m]
    # Written every 3 iterations, each the median of the last (up to) 20 iterations.
    assert len(losses) == 10 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.slow
def test_training_writes_checkpoints_and_results(trained):
    output_dir, results = trained
    files = set(os.listdir(output_dir))
    assert {"model_0000009.pth", "model_0000019.pth", "model_final.pth", "last_checkpoint"} <= files
    assert not [f for f in files if ".tmp" in f]
    with open(os.path.join(output_dir, "last_checkpoint")) as f:
        assert f.read() == "model_final.pth"
    record = json.loads((output_dir / "results.json").read_text())
    assert set(record["summary"][VAL]) == {"APd", "APm"}
    assert set(record["summary"][VAL]["APm"]) == {"AP", "AP50", "AP75"}
    assert record["params"] > 1e6 and record["mult_adds"] > 1e9
    assert "bbox" in results and "segm" in results
    # The final evaluation also goes to metrics.json, through Detectron2's EvalHook.
    assert any("segm/AP50" in m for m in _metrics(output_dir))
    # Where the results come from: code, machine, data, time.
    provenance = record["provenance"]
    commit = subprocess.run(
        ["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert provenance["commit"] == commit and isinstance(provenance["dirty"], bool)
    assert len(provenance["config_fingerprint"]) == len(provenance["model_fingerprint"]) == 16
    assert provenance["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert provenance["machine"]["processes"] == 1 and provenance["machine"]["threads"] >= 1
    assert provenance["datasets"][VAL]["num_val"] == SYNTH_SIZES["val"]  # generator.json
    timing = provenance["timing"]
    assert timing["iterations"] == 30 and timing["start_iteration"] == 0
    assert 0 < timing["seconds_per_iteration"] < timing["wall_seconds"]
    assert timing["eval_seconds"] > 0


@pytest.mark.slow
def test_eval_only_reports_ap_keys(trained, capsys):
    output_dir, _ = trained
    weights = str(output_dir / "model_final.pth")
    eval_dir = output_dir / "eval"
    results = train_net.main(_args(eval_dir, "MODEL.WEIGHTS", weights, eval_only=True))
    assert {"AP", "AP50", "AP75"} <= set(results["bbox"]) and {"AP", "AP50"} <= set(results["segm"])
    printed = capsys.readouterr().out
    assert f"{VAL}: APd (box AP): AP" in printed and "APm (mask AP)" in printed
    record = json.loads((eval_dir / "results.json").read_text())
    assert record["iteration"] == 29


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(synthetic_voc, tmp_path, monkeypatch):
    # Interrupt a run right after its checkpoint at iteration 7 (period 4: files at 3, 7).
    class Interrupted(Exception):
        pass

    original_save = train_net.AtomicCheckpointer.save

    def save_then_die(self, name, **kwargs):
        original_save(self, name, **kwargs)
        if name == "model_0000007":
            raise Interrupted

    monkeypatch.setattr(train_net.AtomicCheckpointer, "save", save_then_die)
    with pytest.raises(Interrupted):
        train_net.main(_args(tmp_path, max_iter=12, period=4))
    monkeypatch.undo()
    with open(tmp_path / "last_checkpoint") as f:
        assert f.read() == "model_0000007.pth"
    saved = torch.load(tmp_path / "model_0000007.pth")
    assert saved["iteration"] == 7

    cfg = runs.setup(_args(tmp_path, resume=True, max_iter=12, period=4))
    trainer = train_net.AttoTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 8
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, saved["model"][name], rtol=0, atol=0)
    saved_optimizer = saved["trainer"]["_trainer"]["optimizer"]
    optimizer_state = trainer.optimizer.state_dict()
    assert len(optimizer_state["state"]) == len(saved_optimizer["state"]) > 0
    for key, state in saved_optimizer["state"].items():
        torch.testing.assert_close(
            optimizer_state["state"][key]["momentum_buffer"], state["momentum_buffer"]
        )
    saved_scheduler = saved["trainer"]["hooks"]["LRScheduler"]
    assert trainer.scheduler.state_dict() == saved_scheduler
    assert trainer.scheduler.last_epoch == 8
    trainer.train()
    assert trainer.iter == 12
    with open(tmp_path / "last_checkpoint") as f:
        assert f.read() == "model_final.pth"


@pytest.mark.slow
def test_nan_loss_stops_before_the_step(synthetic_voc, tmp_path, monkeypatch):
    cfg = runs.setup(_args(tmp_path, max_iter=6, period=2))
    trainer = train_net.AttoTrainer(cfg)
    model = trainer.model
    original_forward = model.forward

    def forward(batched_inputs):
        losses = original_forward(batched_inputs)
        if trainer.iter == 3:
            losses["loss_cls"] = losses["loss_cls"] * float("nan")
        return losses

    monkeypatch.setattr(model, "forward", forward)
    with pytest.raises(FloatingPointError, match="iteration 3.*model_0000001.pth.*--resume"):
        trainer.train()
    weights = {k: v for k, v in model.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert not (tmp_path / "model_final.pth").exists()


def _two_process_worker(output_dir, voc_root):
    register_synthetic_voc(voc_root)
    from detectron2.utils import comm

    threads = train_net.set_cpu_threads()  # as train_net.main does
    args = _args(output_dir, "TEST.EVAL_PERIOD", "0", max_iter=4, period=100, num_gpus=2)
    cfg = runs.setup(args)
    trainer = train_net.AttoTrainer(cfg)
    trainer.train()
    weights = {k: v.detach().clone() for k, v in trainer.model.module.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in trainer.model.module.named_buffers()}
    torch.save(
        {"iter": trainer.iter, "weights": weights, "buffers": buffers, "threads": threads},
        os.path.join(output_dir, f"rank{comm.get_rank()}.pth"),
    )


# Detectron2's launch of two processes that would run for 10 minutes, inside the
# context that tools/train_net.py launches training in.
_LAUNCHER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from detectron2.engine import launch
from atto_detectron.tools.train_net import training_processes_stop_with_this_one
with training_processes_stop_with_this_one():
    launch(time.sleep, 2, dist_url="auto", args=(600,))
"""


@pytest.mark.slow
def test_kill_of_the_launching_process_stops_its_training_processes():
    psutil = pytest.importorskip("psutil")
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, REPO_ROOT])
    workers = []
    try:
        deadline = time.time() + 120
        while len(workers) < 2 and time.time() < deadline:
            time.sleep(0.2)
            workers = [
                child
                for child in psutil.Process(launcher.pid).children(recursive=True)
                if "spawn_main" in " ".join(child.cmdline())
            ]
        assert len(workers) == 2, "the launcher did not start its two processes"
        launcher.send_signal(signal.SIGTERM)  # `kill PID`
        assert launcher.wait(timeout=60) == 128 + signal.SIGTERM
        # Left alone, the spawned processes would sleep (train) on for 10 minutes.
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive
    finally:  # nothing left running, whatever failed
        if launcher.poll() is None:
            launcher.kill()
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()


@pytest.mark.slow
def test_two_process_gloo_training_keeps_ranks_identical(synthetic_voc, tmp_path):
    launch(
        _two_process_worker,
        num_gpus_per_machine=2,
        dist_url="auto",
        args=(str(tmp_path), synthetic_voc),
    )
    rank0 = torch.load(tmp_path / "rank0.pth")
    rank1 = torch.load(tmp_path / "rank1.pth")
    assert rank0["iter"] == rank1["iter"] == 4
    # The two CPU processes share the machine's cores instead of each taking all of them.
    assert rank0["threads"] == rank1["threads"] == max(1, (os.cpu_count() or 1) // 2)
    initial = train_net.AttoTrainer.build_model(runs.setup(_args(tmp_path / "init")))
    changed = 0
    for name, value in rank0["weights"].items():
        torch.testing.assert_close(rank1["weights"][name], value, rtol=0, atol=0)
        changed += not torch.equal(value, initial.state_dict()[name])
    assert changed > 0
    # Each process normalizes its own images, so BN statistics part during training; the
    # final evaluation runs the checkpointed model (the main process's) in both.
    for name, value in rank0["buffers"].items():
        torch.testing.assert_close(rank1["buffers"][name], value, rtol=0, atol=0)


def test_one_machine_gets_a_free_port_unless_a_dist_url_is_given(monkeypatch):
    launched = {}
    monkeypatch.setattr(
        train_net, "launch", lambda main, num_gpus, **kwargs: launched.update(kwargs)
    )
    train_net.run(train_net.parse_args(["--num-gpus", "2", "--config-file", "x.yaml"]))
    assert launched["dist_url"] == "auto"
    given = ["--num-gpus", "2", "--dist-url", "tcp://127.0.0.1:29511"]
    train_net.run(train_net.parse_args(given))
    assert launched["dist_url"] == "tcp://127.0.0.1:29511"
    # Several machines need the one address they all know.
    train_net.run(train_net.parse_args(["--num-machines", "2", "--machine-rank", "1"]))
    assert launched["dist_url"] == train_net.get_parser().get_default("dist_url")
    assert launched["num_machines"] == 2 and launched["machine_rank"] == 1


def test_make_demo_splits_the_batch_evenly_among_its_processes():
    # Detectron2 asserts at start-up that SOLVER.IMS_PER_BATCH divides among the processes.
    with open(os.path.join(REPO_ROOT, "Makefile")) as f:
        makefile = f.read()
    processes = int(re.search(r"^DEMO_PROCESSES \?= (\d+)$", makefile, re.M).group(1))
    config = re.search(r"^DEMO_CONFIG := (\S+)$", makefile, re.M).group(1)
    assert "--num-gpus $(DEMO_PROCESSES)" in makefile
    # The file as it is (load_detection_config would force MODEL.DEVICE to cpu).
    cfg = get_cfg()
    add_attonet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, config))
    assert processes > 1 and cfg.SOLVER.IMS_PER_BATCH % processes == 0
    assert cfg.MODEL.DEVICE == "cpu" and cfg.DATALOADER.NUM_WORKERS == 0
