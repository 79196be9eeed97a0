"""
configs/lazy: the model, data and schedule of the yacs configs, trained and evaluated by
Detectron2's own tools/lazyconfig_train_net.py (unmodified, from the installed wheel).
"""

import functools
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

import detectron2
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetMapper
from detectron2.modeling import build_model
from detectron2.solver import LRMultiplier, build_lr_scheduler, build_optimizer

from atto_detectron.analysis.complexity import mult_adds_by_module
from atto_detectron.analysis.detection import fix_test_workload, zero_box_regression
from atto_detectron.config import load_config

from .helpers import CONFIGS, REPO_ROOT, SYNTH_DATASETS

# Each LazyConfig and the yacs config whose model, data and schedule it has.
PAIRS = [
    ("lazy/atto_maskrcnn_voc.py", "atto_maskrcnn_voc.yaml"),
    ("lazy/atto_maskrcnn_voc_B.py", "atto_maskrcnn_voc_B.yaml"),
    ("lazy/atto_maskrcnn_voc_C.py", "atto_maskrcnn_voc_C.yaml"),
    ("lazy/atto_maskrcnn_voc_D.py", "atto_maskrcnn_voc_D.yaml"),
    ("lazy/atto_maskrcnn_synth.py", "synth/atto_maskrcnn_synth.yaml"),
]
PAIR_IDS = [lazy for lazy, _ in PAIRS]

LAZYCONFIG_TRAIN_NET = os.path.join(
    os.path.dirname(detectron2.__file__), "..", "tools", "lazyconfig_train_net.py"
)


def _load_lazyconfig_train_net():
    spec = importlib.util.spec_from_file_location("lazyconfig_train_net", LAZYCONFIG_TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lazyconfig_train_net = _load_lazyconfig_train_net()


def _lazy_config(name):
    return LazyConfig.load(os.path.join(CONFIGS, name))


def _yacs_config(name):
    return load_config(os.path.join(CONFIGS, name), device="cpu")


# The fixed workload of the mult-add comparison: proposals and detections per image.
# Fewer than the configs' (1000 and 100), on both models alike, to keep NMS over
# proposals x classes boxes and tracing short; _structure compares the configs' own.
PROPOSALS, DETECTIONS = 100, 10


def _build_models(lazy_name, yacs_name, fixed_workload=False):
    """
    The (lazy, yacs) models, on CPU. With ``fixed_workload``: fix_test_workload (NMS and
    score thresholds off) and PROPOSALS, DETECTIONS.
    """
    torch.manual_seed(0)
    lazy_cfg, yacs_cfg = _lazy_config(lazy_name), _yacs_config(yacs_name)
    if fixed_workload:
        yacs_cfg = fix_test_workload(yacs_cfg)
        yacs_cfg.MODEL.RPN.POST_NMS_TOPK_TEST = PROPOSALS
        yacs_cfg.TEST.DETECTIONS_PER_IMAGE = DETECTIONS
        # The same settings, in the LazyConfig.
        rpn, box_predictor = (
            lazy_cfg.model.proposal_generator,
            lazy_cfg.model.roi_heads.box_predictor,
        )
        rpn.nms_thresh = 1.0
        rpn.post_nms_topk = (rpn.post_nms_topk[0], PROPOSALS)
        box_predictor.test_nms_thresh = 1.0
        box_predictor.test_score_thresh = 0.0
        box_predictor.test_topk_per_image = DETECTIONS
    return instantiate(lazy_cfg.model), build_model(yacs_cfg)


# Built once per pair for the tests that only read them.
_models = functools.lru_cache(maxsize=None)(_build_models)


@pytest.fixture(autouse=True, scope="module")
def _free_models():
    yield
    _models.cache_clear()


_NOT_PLAIN = object()


def _plain(value):
    """
    ``value`` as plain data: numbers, strings, lists, dicts, and Detectron2's helper
    objects (Matcher, Box2BoxTransform, ShapeSpec) as (type, settings); _NOT_PLAIN for
    anything else (modules, tensors, functions).
    """
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return _NOT_PLAIN if any(i is _NOT_PLAIN for i in items) else items
    if isinstance(value, dict):
        items = {k: _plain(v) for k, v in value.items()}
        return _NOT_PLAIN if any(i is _NOT_PLAIN for i in items.values()) else items
    if (
        type(value).__module__.startswith("detectron2.")
        and hasattr(value, "__dict__")
        and not isinstance(value, (nn.Module, torch.Tensor))
    ):
        return type(value).__name__, _plain(vars(value))
    return _NOT_PLAIN


# Ways of writing the same module that are not differences:
# * load_config turns SyncBN into Detectron2's naiveSyncBN where there is no GPU (same
#   parameters, buffers and single-process behaviour);
# * a lazy FastRCNNOutputLayers lists the default weight of loss_cls, yacs leaves it out.
_SAME_TYPES = {"NaiveSyncBatchNorm": "SyncBatchNorm"}
_DEFAULT_LOSS_WEIGHTS = {"FastRCNNOutputLayers": {"loss_cls": 1.0}}


def _structure(model: nn.Module):
    """
    Per module: its type and every setting it keeps as plain data (sizes, thresholds,
    sampler and pooler settings, feature names, ...).
    """
    structure = {}
    for name, module in model.named_modules():
        kind = type(module).__name__
        settings = {}
        for key, value in vars(module).items():
            if key.startswith("_") or key in ("training", "process_group"):
                continue
            plain = _plain(value)
            if plain is not _NOT_PLAIN:
                settings[key] = plain
        if kind in _DEFAULT_LOSS_WEIGHTS and "loss_weight" in settings:
            settings["loss_weight"] = {**_DEFAULT_LOSS_WEIGHTS[kind], **settings["loss_weight"]}
        structure[name] = (_SAME_TYPES.get(kind, kind), settings)
    return structure


@pytest.mark.parametrize("lazy_name, yacs_name", PAIRS, ids=PAIR_IDS)
def test_lazy_model_is_the_yacs_model(lazy_name, yacs_name):
    lazy, yacs = _models(lazy_name, yacs_name)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(lazy) == shapes(yacs)
    trainable = lambda m: {n: p.requires_grad for n, p in m.named_parameters()}  # noqa: E731
    assert trainable(lazy) == trainable(yacs)
    assert all(trainable(lazy).values())  # FREEZE_AT 0
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(lazy) == count(yacs) > 1_000_000
    # Buffers start the same whatever the seed: pixel mean and std, anchors, BN statistics.
    lazy_buffers, yacs_buffers = dict(lazy.named_buffers()), dict(yacs.named_buffers())
    assert lazy_buffers.keys() == yacs_buffers.keys()
    for name, buffer in yacs_buffers.items():
        assert torch.equal(lazy_buffers[name], buffer), name
    lazy_structure, yacs_structure = _structure(lazy), _structure(yacs)
    assert lazy_structure.keys() == yacs_structure.keys()
    for name in yacs_structure:
        assert lazy_structure[name] == yacs_structure[name], name


@pytest.mark.slow
@pytest.mark.parametrize("lazy_name, yacs_name", PAIRS, ids=PAIR_IDS)
def test_lazy_model_has_the_yacs_mult_adds(lazy_name, yacs_name):
    lazy, yacs = (zero_box_regression(m) for m in _build_models(lazy_name, yacs_name, True))
    inputs = [{"image": torch.zeros(3, 128, 160), "height": 128, "width": 160}]
    lazy_mult_adds = mult_adds_by_module(lazy, inputs)
    yacs_mult_adds = mult_adds_by_module(yacs, inputs)
    assert lazy_mult_adds == yacs_mult_adds
    # The workload reached every head (else equal heads would prove nothing).
    for part in ("backbone.bottom_up", "proposal_generator", "roi_heads.box_head"):
        assert yacs_mult_adds[part] > 0, part
    assert yacs_mult_adds["roi_heads.mask_head"] > 0


def _augmentations(mapper):
    # Settings as plain data: a LazyConfig's tuples come back as lists.
    augmentations = [(type(aug).__name__, _plain(vars(aug))) for aug in mapper.augmentations.augs]
    assert all(settings is not _NOT_PLAIN for _, settings in augmentations)
    return augmentations


@pytest.mark.parametrize("lazy_name, yacs_name", PAIRS, ids=PAIR_IDS)
def test_lazy_data_is_the_yacs_data(lazy_name, yacs_name):
    lazy, yacs = _lazy_config(lazy_name).dataloader, _yacs_config(yacs_name)
    assert (lazy.train.dataset.names,) == yacs.DATASETS.TRAIN
    assert (lazy.test.dataset.names,) == yacs.DATASETS.TEST
    assert lazy.train.dataset.get("filter_empty", True) == yacs.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    assert lazy.test.dataset.filter_empty is False
    assert lazy.train.total_batch_size == yacs.SOLVER.IMS_PER_BATCH
    assert lazy.train.num_workers == lazy.test.num_workers == yacs.DATALOADER.NUM_WORKERS
    for split, is_train in (("train", True), ("test", False)):
        lazy_mapper = instantiate(lazy[split].mapper)
        yacs_mapper = DatasetMapper(yacs, is_train=is_train)
        assert _augmentations(lazy_mapper) == _augmentations(yacs_mapper), split
        for key in ("image_format", "use_keypoint", "recompute_boxes", "proposal_topk"):
            assert getattr(lazy_mapper, key) == getattr(yacs_mapper, key), (split, key)
        if is_train:
            assert lazy_mapper.use_instance_mask and yacs_mapper.use_instance_mask
            assert lazy_mapper.instance_mask_format == yacs_mapper.instance_mask_format
    assert lazy.evaluator.dataset_name == lazy.test.dataset.names


# Stepping through a VOC schedule (27,000 iterations) takes seconds; synth's is short.
SCHEDULE_PAIRS = [
    pytest.param(lazy, yacs, id=lazy, marks=() if "synth" in lazy else pytest.mark.slow)
    for lazy, yacs in PAIRS
]


@pytest.mark.parametrize("lazy_name, yacs_name", SCHEDULE_PAIRS)
def test_lazy_schedule_is_the_yacs_schedule(lazy_name, yacs_name):
    lazy_cfg, yacs_cfg = _lazy_config(lazy_name), _yacs_config(yacs_name)
    lazy_model, yacs_model = _models(lazy_name, yacs_name)
    lazy_cfg.optimizer.params.model = lazy_model
    lazy_optimizer = instantiate(lazy_cfg.optimizer)
    yacs_optimizer = build_optimizer(yacs_cfg, yacs_model)
    assert type(lazy_optimizer) is type(yacs_optimizer)

    def per_parameter(optimizer, model):
        names = {id(p): n for n, p in model.named_parameters()}
        keys = ("lr", "momentum", "weight_decay", "nesterov", "dampening")
        return {
            names[id(p)]: tuple(group[k] for k in keys)
            for group in optimizer.param_groups
            for p in group["params"]
        }

    assert per_parameter(lazy_optimizer, lazy_model) == per_parameter(yacs_optimizer, yacs_model)

    # The learning rate of every iteration, as the trainers' LR hooks set it.
    max_iter = lazy_cfg.train.max_iter
    assert max_iter == yacs_cfg.SOLVER.MAX_ITER
    lazy_scheduler = LRMultiplier(lazy_optimizer, instantiate(lazy_cfg.lr_multiplier), max_iter)
    yacs_scheduler = build_lr_scheduler(yacs_cfg, yacs_optimizer)
    lazy_lrs, yacs_lrs = [], []
    for _ in range(max_iter):
        lazy_lrs.append(lazy_optimizer.param_groups[0]["lr"])
        yacs_lrs.append(yacs_optimizer.param_groups[0]["lr"])
        lazy_scheduler.step()
        yacs_scheduler.step()
    assert torch.allclose(torch.tensor(lazy_lrs), torch.tensor(yacs_lrs), rtol=1e-9, atol=0)
    assert lazy_lrs[0] == pytest.approx(0.001 * yacs_cfg.SOLVER.BASE_LR)  # linear warm-up
    assert 0.9 * yacs_cfg.SOLVER.BASE_LR < max(lazy_lrs) <= yacs_cfg.SOLVER.BASE_LR


@pytest.mark.parametrize("lazy_name, yacs_name", PAIRS, ids=PAIR_IDS)
def test_lazy_training_settings_are_the_yacs_ones(lazy_name, yacs_name):
    train, yacs = _lazy_config(lazy_name).train, _yacs_config(yacs_name)
    assert train.init_checkpoint == yacs.MODEL.WEIGHTS == ""
    assert train.checkpointer.period == yacs.SOLVER.CHECKPOINT_PERIOD
    assert train.eval_period == yacs.TEST.EVAL_PERIOD
    assert train.get("seed", -1) == yacs.SEED
    assert train.amp.enabled == yacs.SOLVER.AMP.ENABLED


def test_each_lazy_config_has_its_own_output_dir():
    output_dirs = [_lazy_config(lazy).train.output_dir for lazy, _ in PAIRS]
    yacs_dirs = [_yacs_config(name).OUTPUT_DIR for _, name in PAIRS]
    assert len(set(output_dirs)) == len(PAIRS)
    assert not {os.path.normpath(d) for d in output_dirs} & {os.path.normpath(d) for d in yacs_dirs}


def test_synth_config_trains_on_cpu_processes():
    # create_ddp_model passes device_ids=[local rank] unless train.ddp says otherwise,
    # which DistributedDataParallel rejects for a CPU model.
    train = _lazy_config("lazy/atto_maskrcnn_synth.py").train
    assert train.device == "cpu"
    assert "device_ids" in train.ddp and train.ddp.device_ids is None


# --- Training and evaluation through Detectron2's tools/lazyconfig_train_net.py -------

VOC_CONFIG = os.path.join(CONFIGS, "lazy", "atto_maskrcnn_voc.py")
SYNTH_CONFIG = os.path.join(CONFIGS, "lazy", "atto_maskrcnn_synth.py")


def _small_run(
    output_dir, max_iter, train_names=SYNTH_DATASETS["train"], val_names=SYNTH_DATASETS["val"]
):
    """Overrides that make a config a seconds-long CPU run on the generated data."""
    return [
        "model.backbone.bottom_up.spec=D",
        "model.proposal_generator.post_nms_topk=[200,100]",
        "model.roi_heads.batch_size_per_image=64",
        # After a few iterations from scratch every class scores about 1/21, under the
        # 0.05 threshold: keep the 10 best detections, so the evaluation has masks to score.
        "model.roi_heads.box_predictor.test_score_thresh=0.0",
        "model.roi_heads.box_predictor.test_topk_per_image=10",
        f"dataloader.train.dataset.names={train_names}",
        f"dataloader.test.dataset.names={val_names}",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[128]",
        "dataloader.train.mapper.augmentations.0.max_size=160",
        "dataloader.test.mapper.augmentations.0.short_edge_length=128",
        "dataloader.test.mapper.augmentations.0.max_size=160",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
        "train.device=cpu",
        f"train.max_iter={max_iter}",
        "train.checkpointer.period=2",
        "train.log_period=1",
        f"train.output_dir={output_dir}",
    ]


def _main(*argv):
    """lazyconfig_train_net's command line in this process (one process: no launch)."""
    args = lazyconfig_train_net.default_argument_parser().parse_args(list(argv))
    return lazyconfig_train_net.main(args)


def _metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def _predictions(inference_dir):
    with open(os.path.join(inference_dir, "coco_instances_results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def lazy_run(synthetic_voc, tmp_path_factory):
    """atto_maskrcnn_voc.py: 2 iterations, then --resume to 4, then --eval-only."""
    output_dir = str(tmp_path_factory.mktemp("lazy_train"))
    _main("--config-file", VOC_CONFIG, *_small_run(output_dir, max_iter=2))
    first_metrics = _metrics(output_dir)
    _main("--config-file", VOC_CONFIG, "--resume", *_small_run(output_dir, max_iter=4))
    eval_dir = os.path.join(output_dir, "eval_only")
    _main(
        "--config-file",
        VOC_CONFIG,
        "--eval-only",
        *_small_run(eval_dir, max_iter=4),
        f"train.init_checkpoint={os.path.join(output_dir, 'model_final.pth')}",
    )
    return output_dir, first_metrics, eval_dir


@pytest.mark.slow
def test_lazy_training_writes_checkpoints_and_evaluates(lazy_run):
    output_dir, first_metrics, _ = lazy_run
    files = set(os.listdir(output_dir))
    assert {"config.yaml", "last_checkpoint", "model_final.pth", "metrics.json"} <= files
    saved = LazyConfig.load(os.path.join(output_dir, "config.yaml"))
    assert saved.model.backbone.bottom_up.spec == "D"
    assert [m["iteration"] for m in first_metrics if "total_loss" in m] == [0, 1]
    # The evaluation after the last iteration (EvalHook -> inference_on_dataset -> COCO):
    final = _metrics(output_dir)[-1]
    for key in ("bbox/AP", "segm/AP", "segm/AP50"):
        assert key in final and final[key] == final[key], key  # present and not NaN
    assert len(_predictions(os.path.join(output_dir, "inference"))) > 0


@pytest.mark.slow
def test_lazy_resume_continues_from_the_checkpoint(lazy_run):
    output_dir, _, _ = lazy_run
    losses = [m for m in _metrics(output_dir) if "total_loss" in m]
    # Iterations 0, 1 in the first run, 2, 3 after --resume: none trained twice.
    assert [m["iteration"] for m in losses] == [0, 1, 2, 3]
    assert all(torch.isfinite(torch.tensor(m["total_loss"])) for m in losses)
    checkpoint = torch.load(os.path.join(output_dir, "model_final.pth"), map_location="cpu")
    assert checkpoint["iteration"] == 3
    with open(os.path.join(output_dir, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"


@pytest.mark.slow
def test_lazy_eval_only_evaluates_the_trained_weights(lazy_run):
    output_dir, _, eval_dir = lazy_run
    trained = _predictions(os.path.join(output_dir, "inference"))
    evaluated = _predictions(os.path.join(eval_dir, "inference"))
    # The same model_final.pth gives the same detections as the evaluation that ended
    # training (random weights would not).
    assert len(evaluated) == len(trained) > 0
    key = lambda p: (p["image_id"], p["category_id"], round(p["score"], 4))  # noqa: E731
    for a, b in zip(sorted(evaluated, key=key), sorted(trained, key=key)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-2)


@pytest.mark.slow
def test_lazy_synth_trains_in_two_cpu_processes(synthetic_voc, tmp_path):
    # The command line itself, unmodified, with --num-gpus 2: Detectron2's launch starts
    # two processes (Gloo), each loads the config, which registers voc_synth_* through
    # atto_detectron, found under $DETECTRON2_DATASETS/VOCsynth.
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    os.symlink(os.path.dirname(synthetic_voc), datasets / "VOCsynth")
    output_dir = tmp_path / "output"
    env = dict(
        os.environ,
        CUDA_VISIBLE_DEVICES="",
        DETECTRON2_DATASETS=str(datasets),
        PYTHONPATH=REPO_ROOT,
        OMP_NUM_THREADS="1",
    )
    overrides = _small_run(
        output_dir, max_iter=3, train_names="voc_synth_train", val_names="voc_synth_val"
    )
    result = subprocess.run(
        [sys.executable, LAZYCONFIG_TRAIN_NET, "--config-file", SYNTH_CONFIG, "--num-gpus", "2"]
        # A free port, not Detectron2's fixed default, which another run may hold.
        + ["--dist-url", "auto"] + overrides,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output_dir / "log.txt") as f:
        assert "World size: 2" in f.read()
    assert torch.load(output_dir / "model_final.pth", map_location="cpu")["iteration"] == 2
    metrics = _metrics(output_dir)
    assert [m["iteration"] for m in metrics if "total_loss" in m] == [0, 1, 2]
    assert "segm/AP" in metrics[-1]
