"""Classifier training on ImageFolder data: learning, resume, processes, bad input, results."""

import filecmp
import json
import os

import pytest
import torch

from detectron2.engine import launch

import atto_detectron.checkpoint
from atto_detectron import build_attonet_classifier
from atto_detectron.analysis import count_mult_adds, count_parameters, netscore
from atto_detectron.analysis.report import read_accuracies
from atto_detectron.classification import (
    ClassifierTrainConfig,
    ClassifierTrainer,
    build_classification_data,
    check_imagefolder_root,
    evaluate_classifier,
)
from atto_detectron.synthetic import make_synthetic_imagefolder, synthetic_class_names

# AttoNet-D's layers on 24x24 images are too small to gain from a second thread.
pytestmark = pytest.mark.usefixtures("one_thread")

# Small enough for seconds of training on a CPU: 24x24 crops of 32x32 images.
IMAGE_SIZE = 24


def _config(**kwargs):
    values = dict(
        epochs=3,
        base_lr=0.2,
        weight_decay=1e-4,
        label_smoothing=0.0,
        warmup_epochs=0.5,
        progress=False,
        max_to_keep=None,
    )
    values.update(kwargs)
    return ClassifierTrainConfig(**values)


def _data(root, batch_size=16, workers=0):
    return build_classification_data(
        str(root),
        image_size=IMAGE_SIZE,
        batch_size=batch_size,
        num_workers=workers,
        min_crop_scale=0.35,
    )


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """6 classes, 40 training and 10 validation images each."""
    root = tmp_path_factory.mktemp("shapes")
    make_synthetic_imagefolder(str(root), 6, train_per_class=40, val_per_class=10, image_size=32)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """4 classes, 12 training and 4 validation images each."""
    root = tmp_path_factory.mktemp("tiny")
    make_synthetic_imagefolder(str(root), 4, train_per_class=12, val_per_class=4, image_size=32)
    return root


def test_synthetic_imagefolder_is_deterministic(tmp_path):
    make_synthetic_imagefolder(str(tmp_path / "a"), 3, train_per_class=2, val_per_class=1, seed=5)
    make_synthetic_imagefolder(str(tmp_path / "b"), 3, train_per_class=2, val_per_class=1, seed=5)
    make_synthetic_imagefolder(str(tmp_path / "c"), 3, train_per_class=2, val_per_class=1, seed=6)
    classes = synthetic_class_names(3)
    assert check_imagefolder_root(str(tmp_path / "a")) == classes
    files = [
        os.path.join(split, name, f"{name}_{i:05d}.jpg")
        for split, count in (("train", 2), ("val", 1))
        for name in classes
        for i in range(count)
    ]
    for split in ("train", "val"):
        found = sorted(
            os.path.join(split, name, f)
            for name in classes
            for f in os.listdir(tmp_path / "a" / split / name)
        )
        assert found == sorted(f for f in files if f.startswith(split))
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert len(match) == len(files) and not mismatch and not errors
    _, mismatch, _ = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", files, shallow=False)
    assert len(mismatch) == len(files)
    with pytest.raises(ValueError, match="between 2 and 32"):
        synthetic_class_names(33)


@pytest.mark.slow
def test_attonet_d_learns_well_above_chance_in_seconds(shapes, tmp_path):
    data = _data(shapes, batch_size=24)
    torch.manual_seed(0)
    model = build_attonet_classifier("D", num_classes=data.num_classes)
    before = evaluate_classifier(model, data.val)
    trainer = ClassifierTrainer(
        model, data.train, data.val, _config(epochs=6, eval_period=3), output_dir=str(tmp_path)
    )
    metrics = trainer.train()
    chance = 100.0 / data.num_classes
    assert before["top1"] < 2 * chance
    assert metrics["num_images"] == 60 and metrics["epoch"] == 6
    assert metrics["top1"] >= 2.5 * chance, metrics  # 78% here; 57..78% over 4 seeds
    with open(tmp_path / "metrics.json") as f:
        records = [json.loads(line) for line in f]
    losses = [r["total_loss"] for r in records if "total_loss" in r]
    assert losses[-1] < 0.8 * losses[0]
    evaluations = [r for r in records if "top1" in r]
    # 10 iterations per epoch; Detectron2 records the final evaluation at max_iter.
    assert [r["iteration"] for r in evaluations] == [29, 60]
    assert evaluations[-1]["top1"] == metrics["top1"]
    with open(tmp_path / "last_checkpoint") as f:
        assert f.read() == "model_final.pth"


@pytest.mark.slow
def test_resume_continues_exactly(tiny, tmp_path, monkeypatch):
    data = _data(tiny)  # 48 images: 3 iterations per epoch
    torch.manual_seed(0)
    reference = ClassifierTrainer(
        build_attonet_classifier("D", num_classes=4),
        data.train,
        data.val,
        _config(),
        output_dir=str(tmp_path / "reference"),
    )
    reference_metrics = reference.train()

    # The same run, killed right after its checkpoint at the end of epoch 1.
    class Killed(Exception):
        pass

    save = atto_detectron.checkpoint.AtomicCheckpointer.save

    def save_then_die(self, name, **kwargs):
        save(self, name, **kwargs)
        if name == "model_0000002":
            raise Killed

    output_dir = str(tmp_path / "resumed")
    monkeypatch.setattr(atto_detectron.checkpoint.AtomicCheckpointer, "save", save_then_die)
    torch.manual_seed(0)
    killed = ClassifierTrainer(
        build_attonet_classifier("D", num_classes=4),
        data.train,
        data.val,
        _config(),
        output_dir=output_dir,
    )
    with pytest.raises(Killed):
        killed.train()
    monkeypatch.undo()

    saved = torch.load(os.path.join(output_dir, "model_0000002.pth"))
    torch.manual_seed(1)  # other initial weights: all must come from the checkpoint
    resumed = ClassifierTrainer(
        build_attonet_classifier("D", num_classes=4),
        data.train,
        data.val,
        _config(),
        output_dir=output_dir,
    )
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3 and resumed.scheduler.last_epoch == 3
    assert resumed.scheduler.state_dict() == saved["trainer"]["hooks"]["LRScheduler"]
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, saved["model"][name]), name
    optimizer_state = resumed.optimizer.state_dict()["state"]
    saved_state = saved["trainer"]["_trainer"]["optimizer"]["state"]
    assert len(optimizer_state) == len(saved_state) > 0
    for key, state in saved_state.items():
        assert torch.equal(optimizer_state[key]["momentum_buffer"], state["momentum_buffer"])

    metrics = resumed.train()
    assert metrics == reference_metrics
    assert resumed.iter == reference.iter == 9
    for name, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    reference_momentum = reference.optimizer.state_dict()["state"]
    for key, state in resumed.optimizer.state_dict()["state"].items():
        assert torch.equal(state["momentum_buffer"], reference_momentum[key]["momentum_buffer"])

    # A different batch size changes the length of an epoch: refuse to resume.
    other = _data(tiny, batch_size=8)
    mismatched = ClassifierTrainer(
        build_attonet_classifier("D", num_classes=4),
        other.train,
        other.val,
        _config(),
        output_dir=output_dir,
    )
    with pytest.raises(ValueError, match="3 iterations per epoch, this run has 6"):
        mismatched.resume_or_load(resume=True)


@pytest.mark.slow
def test_nan_loss_stops_before_the_step_and_keeps_the_checkpoint(tiny, tmp_path, monkeypatch):
    data = _data(tiny)  # 3 iterations per epoch: a checkpoint after iteration 2
    model = build_attonet_classifier("D", num_classes=4)
    trainer = ClassifierTrainer(model, data.train, data.val, _config(), output_dir=str(tmp_path))
    forward = model.forward

    def nan_at_iteration_4(images):
        logits = forward(images)
        return logits * float("nan") if trainer.iter == 4 else logits

    monkeypatch.setattr(model, "forward", nan_at_iteration_4)
    with pytest.raises(FloatingPointError, match="iteration 4.*model_0000002.pth.*learning rate"):
        trainer.train()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with open(tmp_path / "last_checkpoint") as f:
        assert f.read() == "model_0000002.pth"


def _two_process_worker(root, output_dir):
    from detectron2.utils import comm

    torch.set_num_threads(1)
    data = _data(root)  # 8 images per process and iteration
    torch.manual_seed(comm.get_rank())  # DDP starts every process from process 0's weights
    model = build_attonet_classifier("D", num_classes=data.num_classes)
    trainer = ClassifierTrainer(
        model, data.train, data.val, _config(epochs=2), output_dir=output_dir
    )
    metrics = trainer.train()
    torch.save(
        {"metrics": metrics, "state": model.state_dict(), "iters_per_epoch": len(data.train)},
        os.path.join(output_dir, f"rank{comm.get_rank()}.pth"),
    )


@pytest.mark.slow
def test_two_gloo_processes_train_one_model_and_count_each_image_once(tiny, tmp_path):
    launch(_two_process_worker, 2, dist_url="auto", args=(str(tiny), str(tmp_path)))
    rank0 = torch.load(tmp_path / "rank0.pth")
    rank1 = torch.load(tmp_path / "rank1.pth")
    assert rank0["iters_per_epoch"] == rank1["iters_per_epoch"] == 3
    for name, value in rank0["state"].items():
        assert torch.equal(rank1["state"][name], value), name
    assert rank0["metrics"] == rank1["metrics"]
    assert rank0["metrics"]["num_images"] == 16
    # One process evaluating the saved model finds the same accuracies.
    data = _data(tiny)
    model = build_attonet_classifier("D", num_classes=4)
    model.load_state_dict(torch.load(tmp_path / "model_final.pth")["model"])
    single = evaluate_classifier(model, data.val)
    assert single["top1"] == rank0["metrics"]["top1"] and single["top5"] == rank0["metrics"]["top5"]


def test_bad_imagefolder_roots_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'none'} does not exist"):
        check_imagefolder_root(str(tmp_path / "none"))
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=f"Missing {tmp_path / 'val'}"):
        check_imagefolder_root(str(tmp_path))
    (tmp_path / "val").mkdir()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'val'} has no class folders"):
        check_imagefolder_root(str(tmp_path))
    (tmp_path / "val" / "dog").mkdir()
    with pytest.raises(ValueError, match=r"only in train: \['cat'\]; only in val: \['dog'\]"):
        check_imagefolder_root(str(tmp_path))
    (tmp_path / "val" / "dog").rmdir()
    (tmp_path / "val" / "cat").mkdir()
    assert check_imagefolder_root(str(tmp_path)) == ["cat"]
    # Class folders without images.
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'train'}: Found no valid file"):
        _data(tmp_path)


def test_unreadable_image_names_the_file(tiny, tmp_path):
    root = tmp_path / "data"
    make_synthetic_imagefolder(str(root), 2, train_per_class=4, val_per_class=2, image_size=32)
    broken = root / "val" / "01_green_square" / "01_green_square_00001.jpg"
    broken.write_bytes(b"not a jpeg")
    data = _data(root, batch_size=4)
    with pytest.raises(OSError, match=f"Cannot read image {broken}.*Replace or delete"):
        evaluate_classifier(build_attonet_classifier("D", num_classes=2), data.val)
    with pytest.raises(ValueError, match="fewer than one batch of 16"):
        _data(root, batch_size=16)


def test_train_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="lr_schedule"):
        ClassifierTrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="increasing"):
        ClassifierTrainConfig(lr_steps=(60, 30))


def test_step_schedule_and_warmup():
    model = torch.nn.Linear(2, 2)
    config = ClassifierTrainConfig(
        epochs=4,
        base_lr=1.0,
        lr_schedule="step",
        lr_steps=(2, 3, 9),
        warmup_epochs=1,
        warmup_factor=0.5,
    )
    from atto_detectron.classification import (
        build_classifier_lr_scheduler,
        build_classifier_optimizer,
    )

    optimizer = build_classifier_optimizer(model, config)
    scheduler = build_classifier_lr_scheduler(optimizer, config, iters_per_epoch=2)
    lrs = []
    for _ in range(8):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.5, 0.75, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.slow
def test_train_classifier_tool_writes_results_with_netscore(tiny, tmp_path, capsys, monkeypatch):
    from atto_detectron.tools import train_classifier as tool

    output = tmp_path / "out"
    argv = [
        "--variant",
        "D",
        "--data-root",
        str(tiny),
        "--num-classes",
        "5",
        "--image-size",
        str(IMAGE_SIZE),
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--no-progress",
        "--output",
        str(output),
    ]
    args = tool.get_parser().parse_args(argv)
    tool.check_args(args)
    metrics = tool.main(args)
    record = json.loads((output / "results.json").read_text())
    model = build_attonet_classifier("D", num_classes=5)
    params = count_parameters(model)
    mult_adds = count_mult_adds(model, (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),))
    assert record["model"] == "AttoNet-D" and record["num_classes"] == 5
    assert record["top1"] == metrics["top1"] and record["top5"] == metrics["top5"]
    assert (record["params"], record["mult_adds"]) == (params, mult_adds)
    assert record["netscore"] == pytest.approx(netscore(record["top1"], params, mult_adds))
    printed = capsys.readouterr().out
    assert f"top-1      {record['top1']:.2f}%" in printed and "NetScore" in printed

    # --eval-only on the final weights finds the same accuracy.
    args = tool.get_parser().parse_args(
        argv[:-2]
        + [
            "--output",
            str(tmp_path / "eval"),
            "--eval-only",
            "--weights",
            str(output / "model_final.pth"),
        ]
    )
    tool.check_args(args)
    assert tool.main(args) == {k: metrics[k] for k in ("top1", "top5", "num_images")}

    # The results file feeds analyze_complexity's NetScore column.
    assert read_accuracies([str(output / "results.json")]) == {"AttoNet-D": record["top1"]}
    from atto_detectron.tools import analyze_complexity as analyze

    captured = {}

    def complexity_report(*args, accuracies=None, **kwargs):
        captured.update(accuracies)
        raise SystemExit(0)

    monkeypatch.setattr(analyze, "complexity_report", complexity_report)
    with pytest.raises(SystemExit):
        analyze.main(["--accuracy", "A=73.0", "--accuracy-from", str(output / "results.json")])
    assert captured == {"AttoNet-A": 73.0, "AttoNet-D": record["top1"]}
    assert "measured at 24x24 on 5 classes" in capsys.readouterr().err


def test_tool_rejects_bad_arguments(tiny):
    from atto_detectron.tools import train_classifier as tool

    def check(*argv):
        tool.check_args(tool.get_parser().parse_args(["--data-root", str(tiny), *argv]))

    with pytest.raises(ValueError, match=r"--num-classes 3 is fewer than the 4 class folders"):
        check("--num-classes", "3")
    with pytest.raises(ValueError, match="Unknown AttoNet variant 'E'"):
        check("--variant", "E")
    with pytest.raises(ValueError, match="--eval-only needs --weights"):
        check("--eval-only")


def test_read_accuracies_errors(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ValueError, match=f"{missing} does not exist"):
        read_accuracies([str(missing)])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"iteration": 3}))
    with pytest.raises(ValueError, match=f"{other} has no 'model' and 'top1'"):
        read_accuracies([str(other)])
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"model": "ResNet-50", "top1": 70.0}))
    with pytest.raises(ValueError, match="'ResNet-50', which is not one of"):
        read_accuracies([str(unknown)])
    first, second = tmp_path / "d1.json", tmp_path / "d2.json"
    first.write_text(json.dumps({"model": "AttoNet-D", "top1": 60.0}))
    second.write_text(json.dumps({"model": "attonet-d", "top1": 61.0}))
    with pytest.raises(ValueError, match="both give the top-1 of AttoNet-D"):
        read_accuracies([str(first), str(second)])
