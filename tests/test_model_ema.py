"""MODEL_EMA: the weight average's arithmetic, its processes, checkpoints and evaluation."""

import json
import os

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detectron2.engine import launch

from atto_detectron.config import load_config
from atto_detectron.engine import ModelEMA, load_ema_weights, load_ema_weights_if_enabled
from atto_detectron.engine.ema import CHECKPOINT_KEY
from atto_detectron.tools import train_net

from .helpers import CONFIGS, SYNTH_DATASETS, leave_process_group


def _toy():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())


def _train_step(model, images):
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(images).mean().backward()
    optimizer.step()
    optimizer.zero_grad()


def test_the_average_copies_then_moves_by_one_minus_decay():
    torch.manual_seed(0)
    model = _toy()
    ema = ModelEMA(model, decay=0.75)
    _train_step(model, torch.randn(2, 3, 8, 8))
    ema.after_step()  # the first step copies the weights and buffers
    for (name, value), averaged in zip(
        model.state_dict().items(), ema.module.state_dict().values()
    ):
        if value.is_floating_point():
            assert torch.equal(averaged, value), name
    first = {k: v.clone() for k, v in ema.module.state_dict().items()}
    _train_step(model, torch.randn(2, 3, 8, 8))
    ema.after_step()
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            expected = 0.75 * first[name] + 0.25 * value
            assert torch.allclose(ema.module.state_dict()[name], expected, atol=1e-6), name
    assert not ema.module.training
    with pytest.raises(ValueError, match="MODEL_EMA.DECAY must be in"):
        ModelEMA(model, decay=1.0)


def test_the_average_round_trips_through_a_checkpoint(tmp_path):
    model = _toy()
    ema = ModelEMA(model, decay=0.9)
    _train_step(model, torch.randn(2, 3, 8, 8))
    ema.after_step()
    path = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict(), CHECKPOINT_KEY: ema.state_dict()}, path)
    restored = ModelEMA(_toy(), decay=0.9)
    restored.load_state_dict(torch.load(path, weights_only=True)[CHECKPOINT_KEY])
    target = _toy()
    assert load_ema_weights(target, str(path))
    for name, value in ema.module.state_dict().items():
        assert torch.equal(restored.module.state_dict()[name], value), name
        assert torch.equal(target.state_dict()[name], value), name
    # A weights file without an average leaves the model as it is, with a warning.
    torch.save({"model": model.state_dict()}, tmp_path / "plain.pth")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    assert not load_ema_weights(target, str(tmp_path / "plain.pth"))
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def _buffers_worker(output_dir):
    from detectron2.utils import comm

    torch.manual_seed(0)
    model = _toy()
    ema = ModelEMA(DistributedDataParallel(model, device_ids=None), decay=0.5)
    # Each process normalizes other images: its BN statistics differ from the other's.
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 8, 8) * (1 + comm.get_rank()))
    own = model[1].running_var.clone()
    ema.after_step()
    with open(os.path.join(output_dir, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump({"own": own.tolist(), "ema": ema.module[1].running_var.tolist()}, f)
    del ema, model
    leave_process_group()


@pytest.mark.slow
def test_every_process_holds_the_same_average_of_bn_statistics(tmp_path):
    launch(_buffers_worker, 2, dist_url="auto", args=(str(tmp_path),))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["own"] != ranks[1]["own"]
    assert ranks[0]["ema"] == ranks[1]["ema"]
    mean = (torch.tensor(ranks[0]["own"]) + torch.tensor(ranks[1]["own"])) / 2
    assert torch.allclose(torch.tensor(ranks[0]["ema"]), mean)


@pytest.mark.slow
def test_training_evaluates_and_checkpoints_the_average(synthetic_voc, tmp_path, monkeypatch):
    config = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")
    opts = [
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
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.WARMUP_ITERS",
        "1",
        "MODEL_EMA.ENABLED",
        "True",
        "MODEL_EMA.DECAY",
        "0.5",
        "OUTPUT_DIR",
        str(tmp_path),
    ]
    evaluated = []
    monkeypatch.setattr(
        train_net.AttoTrainer, "test", classmethod(lambda cls, cfg, model: evaluated.append(model))
    )
    trainer = train_net.AttoTrainer(load_config(config, opts, freeze=True))
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert evaluated == [trainer.ema.module]  # the average is evaluated, not the last weights
    saved = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert int(saved[CHECKPOINT_KEY]["n_averaged"]) == 3
    # --eval-only and the demo load the average when MODEL_EMA.ENABLED is set.
    cfg = load_config(config, opts + ["MODEL.WEIGHTS", str(tmp_path / "model_final.pth")])
    model = train_net.AttoTrainer.build_model(cfg)
    assert load_ema_weights_if_enabled(model, cfg)
    for name, value in trainer.ema.module.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    cfg.MODEL_EMA.ENABLED = False
    assert not load_ema_weights_if_enabled(model, cfg)
