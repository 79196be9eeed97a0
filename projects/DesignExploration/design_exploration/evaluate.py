"""Candidate evaluation: build a candidate, initialise it, measure it, train it briefly, test it.

Two tasks share one interface (:class:`CandidateEvaluator`):

* :class:`ClassificationEvaluator`: an :class:`~atto_detectron.modeling.AttoNetClassifier`
  on an ImageFolder dataset, trained by
  :class:`~atto_detectron.classification.ClassifierTrainer`; accuracy = top-1 on ``val``;
  complexity on one ``image_size`` x ``image_size`` image.
* :class:`DetectionEvaluator`: Atto-MaskRCNN from a Detectron2 config with
  ``MODEL.ATTONET.SPEC`` set to the candidate and its neck applied
  (:func:`~design_exploration.neck.apply_neck`), trained by
  :class:`~atto_detectron.engine.AttoTrainer`; accuracy = box AP50 of Detectron2's
  COCOEvaluator on ``DATASETS.TEST``; complexity of the whole detector as
  :func:`~atto_detectron.analysis.detection.detection_complexity` measures it (test image
  size, fixed number of proposals and detections).

Latencies (when a requirement or the objective needs them) are measured as
:class:`~design_exploration.settings.LatencySettings` say: for classification, the trained
classifier in PyTorch; for detection, the whole detector at the config's operating point
with random weights, in the engine named there (:mod:`~design_exploration.latency`). The
detection evaluator also measures the peers that requirements are relative to
(:meth:`DetectionEvaluator.measure_peer`).

Each candidate is trained on one of two schedules: "scratch" (the prototype, and the final
retraining of the family, all with the same seed) or "finetune" (a short schedule for a
candidate that inherits its parent's weights).
"""

import copy
import gc
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn

from atto_detectron.analysis import count_mult_adds, count_parameters
from atto_detectron.classification import (
    ClassifierTrainConfig,
    ClassifierTrainer,
    build_classification_data,
    check_imagefolder_root,
)
from atto_detectron.modeling import AttoNetSpec, build_attonet_classifier, save_attonet_spec

from .inherit import CLASSIFIER_LAYOUT, DETECTOR_FPN_LAYOUT, AttoNetLayout
from .latency import torch_threads
from .neck import NeckGenome, apply_neck, neck_of
from .objective import measure_latency_ms
from .peers import PeerRecord, peer_config_file
from .settings import LATENCY_ENGINES, LatencySettings

__all__ = [
    "SCHEDULES",
    "CandidateResult",
    "CandidateEvaluator",
    "ClassificationSearchConfig",
    "ClassificationEvaluator",
    "DetectionSearchConfig",
    "DetectionEvaluator",
]

SCHEDULES = ("scratch", "finetune")
Initializer = Callable[[nn.Module], object]
LatencyRequest = Union[bool, None, LatencySettings]


def _latency_settings(measure_latency: LatencyRequest) -> Optional[LatencySettings]:
    """``evaluate``'s ``measure_latency``: settings, True (the defaults), False or None."""
    if isinstance(measure_latency, LatencySettings):
        return measure_latency
    return LatencySettings() if measure_latency else None


@dataclass
class CandidateResult:
    """
    What one evaluation measured; ``state_dict`` holds the trained weights (on CPU).
    ``latency_ms`` is the latency in the settings' ``engine``, ``latencies_ms`` maps each
    engine measured (:attr:`~design_exploration.settings.LatencySettings.engines`) to its
    latency (empty without latencies).
    """

    accuracy: float
    params: int
    mult_adds: int
    latency_ms: Optional[float]
    metrics: Dict
    state_dict: Dict[str, torch.Tensor] = field(repr=False)
    latencies_ms: Dict[str, float] = field(default_factory=dict)


class CandidateEvaluator:
    """
    Interface of the task-specific evaluators.

    Attributes:
        task: "classification" or "detection".
        accuracy_name: what "accuracy" means ("top-1", "box AP50").
        input_size: (H, W) at which parameters and mult-adds are counted.
        layout: where the AttoNet sits in the model's state dict (for inheritance).
        latency_engines: the engines it can measure latency in.
        prototype_neck: the neck of the models it builds
            (:class:`~design_exploration.neck.NeckGenome`); None where there is none.
    """

    task: str
    accuracy_name: str
    layout: AttoNetLayout
    latency_engines: Tuple[str, ...] = ("pytorch",)
    prototype_neck: Optional[NeckGenome] = None

    def settings(self) -> Dict:
        """Everything that changes the results (stored with the search state)."""
        raise NotImplementedError

    @property
    def input_size(self) -> Tuple[int, int]:
        raise NotImplementedError

    def complexity(self, spec: AttoNetSpec, neck: Optional[NeckGenome] = None) -> Tuple[int, int]:
        """(parameters, mult-adds) of the model built from ``spec`` and ``neck``, untrained."""
        raise NotImplementedError

    def count_parameters(self, spec: AttoNetSpec, neck: Optional[NeckGenome] = None) -> int:
        """Parameters of the model built from ``spec`` (may be cheaper than complexity)."""
        return self.complexity(spec, neck)[0]

    def member_config(self, spec_path: str, neck: Optional[NeckGenome]) -> Optional[str]:
        """The text of a config that trains the model of ``spec_path`` (None: no config)."""
        return None

    def evaluate(
        self,
        spec: AttoNetSpec,
        spec_path: str,
        schedule: str,
        seed: int,
        initialize: Optional[Initializer] = None,
        measure_latency: LatencyRequest = False,
        neck: Optional[NeckGenome] = None,
    ) -> CandidateResult:
        """
        Builds the model of ``spec`` and ``neck`` (None: the config's; the spec file is
        ``spec_path``) with ``seed``,
        calls ``initialize(model)`` (weight inheritance) when given, trains it on
        ``schedule`` and evaluates it; measures its latency when ``measure_latency``
        (:class:`~design_exploration.settings.LatencySettings`, or True for the defaults).
        """
        raise NotImplementedError

    def peer_config_file(self, name: str) -> str:
        """
        The config of peer ``name`` (see :mod:`~design_exploration.peers`).

        Raises:
            ValueError: when the task has no peers, or the peer is unknown.
        """
        raise ValueError(
            f"requirements relative to peers ({name}) need --task detection: the peers are "
            f"detectors"
        )

    def measure_peer(
        self,
        name: str,
        seed: int,
        accuracy: bool,
        latency: Optional[LatencySettings],
    ) -> PeerRecord:
        """
        Measures peer ``name``: parameters and mult-adds; its accuracy when ``accuracy``
        (trained on the "scratch" schedule with ``seed``, as the prototype); its latency
        with ``latency`` when given.
        """
        raise ValueError(f"{self.task} has no peers (see peer_config_file)")


def _cpu_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclass
class ClassificationSearchConfig:
    """
    Data and training of classification candidates.

    Attributes:
        data_root: ImageFolder dataset (``train/`` and ``val/``).
        image_size: training and validation crops (and the complexity input).
        num_classes: FC outputs (default: the number of class folders).
        batch_size, workers, min_crop_scale: see ``build_classification_data``.
        lr, weight_decay, label_smoothing, warmup_epochs: SGD settings of the scratch
            schedule (see :class:`~atto_detectron.classification.ClassifierTrainConfig`).
        scratch_epochs: epochs of the prototype's training and of the family's retraining.
        finetune_epochs: epochs of a candidate that inherited its parent's weights.
        finetune_lr: its learning rate (cosine to 0, no warmup).
    """

    data_root: str
    image_size: int = 32
    num_classes: Optional[int] = None
    batch_size: int = 32
    workers: int = 0
    min_crop_scale: float = 0.35
    lr: float = 0.4
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    warmup_epochs: float = 1.0
    scratch_epochs: int = 10
    finetune_epochs: int = 2
    finetune_lr: float = 0.1

    def __post_init__(self):
        if self.scratch_epochs < 1 or self.finetune_epochs < 1:
            raise ValueError(
                f"scratch_epochs and finetune_epochs must be at least 1; got "
                f"{self.scratch_epochs}, {self.finetune_epochs}"
            )


class ClassificationEvaluator(CandidateEvaluator):
    """Candidates as image classifiers (see the module docstring)."""

    task = "classification"
    accuracy_name = "top-1"
    layout = CLASSIFIER_LAYOUT

    def __init__(self, config: ClassificationSearchConfig, device: Optional[str] = None):
        self.config = config
        self.device = device
        classes = check_imagefolder_root(config.data_root)  # fails early, naming the folder
        self.num_classes = config.num_classes or len(classes)
        if self.num_classes < len(classes):
            raise ValueError(
                f"num_classes {self.num_classes} is below the {len(classes)} class folders of "
                f"{config.data_root}"
            )
        self._data = None
        self._complexity = {}

    def settings(self) -> Dict:
        return dict(asdict(self.config), num_classes=self.num_classes)

    @property
    def input_size(self) -> Tuple[int, int]:
        return self.config.image_size, self.config.image_size

    @property
    def data(self):
        if self._data is None:
            c = self.config
            self._data = build_classification_data(
                c.data_root,
                image_size=c.image_size,
                batch_size=c.batch_size,
                num_workers=c.workers,
                min_crop_scale=c.min_crop_scale,
            )
        return self._data

    def _input(self, device="cpu") -> torch.Tensor:
        return torch.zeros(1, 3, *self.input_size, device=device)

    @staticmethod
    def _no_neck(neck) -> None:
        if neck is not None:
            raise ValueError("a classifier has no neck to search; use --task detection")

    def count_parameters(self, spec: AttoNetSpec, neck=None) -> int:
        self._no_neck(neck)
        return count_parameters(build_attonet_classifier(spec, self.num_classes))

    def complexity(self, spec: AttoNetSpec, neck=None) -> Tuple[int, int]:
        self._no_neck(neck)
        key = repr(spec.stages) + repr(spec.stem_channels)
        if key not in self._complexity:
            model = build_attonet_classifier(spec, self.num_classes)
            self._complexity[key] = (
                count_parameters(model),
                count_mult_adds(model, (self._input(),)),
            )
        return self._complexity[key]

    def train_config(self, schedule: str, seed: int) -> ClassifierTrainConfig:
        c = self.config
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
        scratch = schedule == "scratch"
        return ClassifierTrainConfig(
            epochs=c.scratch_epochs if scratch else c.finetune_epochs,
            base_lr=c.lr if scratch else c.finetune_lr,
            warmup_epochs=c.warmup_epochs if scratch else 0.0,
            weight_decay=c.weight_decay,
            label_smoothing=c.label_smoothing,
            eval_period=0,
            seed=seed,
            progress=False,
        )

    def evaluate(
        self, spec, spec_path, schedule, seed, initialize=None, measure_latency=False, neck=None
    ):
        self._no_neck(neck)
        torch.manual_seed(seed)
        model = build_attonet_classifier(spec, self.num_classes)
        if initialize is not None:
            initialize(model)
        params, mult_adds = self.complexity(spec)
        trainer = ClassifierTrainer(
            model,
            self.data.train,
            self.data.val,
            self.train_config(schedule, seed),
            output_dir=None,
            device=self.device,
        )
        metrics = trainer.train()
        latency = None
        latency_settings = _latency_settings(measure_latency)
        if latency_settings is not None:
            if latency_settings.engines != ("pytorch",):
                raise ValueError(
                    f"classification measures latency in PyTorch only; got engines "
                    f"{list(latency_settings.engines)}"
                )
            with torch_threads(latency_settings.threads):
                latency = measure_latency_ms(
                    model,
                    self._input(next(model.parameters()).device),
                    runs=latency_settings.runs,
                    warmup=latency_settings.warmup,
                )
        return CandidateResult(
            accuracy=float(metrics["top1"]),
            params=params,
            mult_adds=mult_adds,
            latency_ms=latency,
            metrics=dict(metrics),
            state_dict=_cpu_state(model),
            latencies_ms={} if latency is None else {"pytorch": latency},
        )


@dataclass
class DetectionSearchConfig:
    """
    Training of detection candidates.

    Attributes:
        config_file: a Detectron2 config of an AttoNet-FPN model (e.g.
            configs/synth/atto_maskrcnn_synth.yaml); its MODEL.ATTONET.SPEC is replaced by
            each candidate's spec file.
        opts: "KEY VALUE" overrides, as tools/train_net.py takes them.
        scratch_iters: SOLVER.MAX_ITER of the prototype and of the family's retraining
            (default: the config's); SOLVER.STEPS and WARMUP_ITERS scale with it.
        finetune_iters: iterations of a candidate that inherited its parent's weights.
        finetune_lr_factor: its learning rate as a fraction of SOLVER.BASE_LR.
    """

    config_file: str
    opts: Tuple[str, ...] = ()
    scratch_iters: Optional[int] = None
    finetune_iters: int = 100
    finetune_lr_factor: float = 0.5

    def __post_init__(self):
        self.opts = tuple(str(o) for o in self.opts)
        if len(self.opts) % 2:
            raise ValueError(f"opts must be KEY VALUE pairs; got {list(self.opts)}")


class DetectionEvaluator(CandidateEvaluator):
    """Candidates as Atto-MaskRCNN backbones (see the module docstring)."""

    task = "detection"
    accuracy_name = "box AP50"
    layout = DETECTOR_FPN_LAYOUT
    latency_engines = LATENCY_ENGINES

    def __init__(self, config: DetectionSearchConfig):
        if not os.path.isfile(config.config_file):
            raise FileNotFoundError(
                f"Detection config {config.config_file!r} does not exist; give a Detectron2 "
                f"yaml of an AttoNet-FPN model, e.g. configs/synth/atto_maskrcnn_synth.yaml."
            )
        self.config = config
        self.base_cfg = self._load_base_cfg()
        if self.base_cfg.MODEL.BACKBONE.NAME != "build_attonet_fpn_backbone":
            raise ValueError(
                f"{config.config_file}: MODEL.BACKBONE.NAME is "
                f"{self.base_cfg.MODEL.BACKBONE.NAME!r}; the explorer designs AttoNet-FPN "
                f"backbones (build_attonet_fpn_backbone)."
            )
        if self.base_cfg.MODEL.WEIGHTS:
            raise ValueError(
                f"{config.config_file}: MODEL.WEIGHTS is {self.base_cfg.MODEL.WEIGHTS!r}, but "
                f"the explorer trains the prototype and the family from scratch and the "
                f"candidates from their parents' weights. Drop MODEL.WEIGHTS; to start from "
                f"ImageNet50, explore with --task classification and train the family's "
                f"detectors with tools/train_net.py and MODEL.ATTONET.SPEC."
            )
        self._complexity = {}
        self._latency = {}

    def _load_base_cfg(self):
        from atto_detectron.config import load_config

        return load_config(self.config.config_file, self.config.opts)

    def settings(self) -> Dict:
        return asdict(self.config)

    @property
    def input_size(self) -> Tuple[int, int]:
        from atto_detectron.engine.results import eval_image_size

        return tuple(eval_image_size(self.base_cfg))

    @property
    def prototype_neck(self) -> Optional[NeckGenome]:
        """The config's neck; None where its FPN levels are not ones the search varies."""
        try:
            return neck_of(self.base_cfg)
        except ValueError:
            return None

    def _with_neck(self, cfg, neck: Optional[NeckGenome]):
        if neck is None or neck == neck_of(cfg):
            return cfg
        return apply_neck(cfg, neck)

    def candidate_cfg(
        self,
        spec_path: str,
        schedule: str,
        seed: int,
        output_dir: str,
        neck: Optional[NeckGenome] = None,
    ):
        """The Detectron2 config that trains and tests one candidate."""
        cfg = self._scheduled(self._with_neck(self.base_cfg, neck), schedule, seed, output_dir)
        cfg.defrost()
        cfg.MODEL.ATTONET.SPEC = spec_path
        cfg.freeze()
        return cfg

    def _scheduled(self, base_cfg, schedule: str, seed: int, output_dir: str):
        """``base_cfg`` on ``schedule`` with ``seed``, writing to ``output_dir``."""
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
        cfg = base_cfg.clone()
        cfg.defrost()
        base_iters = cfg.SOLVER.MAX_ITER
        if schedule == "scratch":
            iters = self.config.scratch_iters or self.base_cfg.SOLVER.MAX_ITER
        else:
            iters = self.config.finetune_iters
            cfg.SOLVER.BASE_LR *= self.config.finetune_lr_factor
        scale = iters / base_iters
        cfg.SOLVER.MAX_ITER = iters
        cfg.SOLVER.STEPS = tuple(
            s for s in (int(round(s * scale)) for s in cfg.SOLVER.STEPS) if 0 < s < iters
        )
        cfg.SOLVER.WARMUP_ITERS = (
            0 if schedule == "finetune" else int(cfg.SOLVER.WARMUP_ITERS * scale)
        )
        cfg.SOLVER.CHECKPOINT_PERIOD = iters
        cfg.TEST.EVAL_PERIOD = 0
        cfg.MODEL.WEIGHTS = ""
        cfg.OUTPUT_DIR = output_dir
        cfg.SEED = int(seed % 2**31)
        cfg.freeze()
        return cfg

    def member_config(self, spec_path: str, neck: Optional[NeckGenome]) -> str:
        name = os.path.splitext(os.path.basename(spec_path))[0]
        cfg = self.candidate_cfg(
            os.path.abspath(spec_path), "scratch", 0, os.path.join("output", name), neck
        )
        return cfg.dump()

    def complexity(self, spec: AttoNetSpec, neck: Optional[NeckGenome] = None) -> Tuple[int, int]:
        from atto_detectron.analysis.detection import detection_complexity

        key = repr(spec.stages) + repr(spec.stem_channels) + repr(neck)
        if key not in self._complexity:
            with tempfile.TemporaryDirectory() as tmp:
                path = save_attonet_spec(spec, os.path.join(tmp, "spec.yaml"))
                cfg = self.candidate_cfg(path, "scratch", 0, tmp, neck)
                measured = detection_complexity(cfg, self.input_size)
            self._complexity[key] = (
                int(measured["params"]["total"]),
                int(measured["mult_adds"]["total"]),
            )
        return self._complexity[key]

    # Peers' operating point and training: what must equal the search config's for the
    # comparison to be paired.
    PAIRED_KEYS = (
        "INPUT.MIN_SIZE_TEST",
        "INPUT.MAX_SIZE_TEST",
        "INPUT.MIN_SIZE_TRAIN",
        "INPUT.MAX_SIZE_TRAIN",
        "MODEL.RPN.POST_NMS_TOPK_TEST",
        "TEST.DETECTIONS_PER_IMAGE",
        "DATASETS.TRAIN",
        "DATASETS.TEST",
        "SOLVER.IMS_PER_BATCH",
        "SOLVER.MAX_ITER",
        "MODEL.ROI_HEADS.NUM_CLASSES",
    )

    def peer_config_file(self, name: str) -> str:
        return peer_config_file(name, self.config.config_file)

    def peer_cfg(self, name: str, seed: int, output_dir: str):
        """
        The Detectron2 config that trains and tests peer ``name``: its own config with the
        search's overrides, on the "scratch" schedule with ``seed`` (the prototype's
        training: the same iterations, images and order), from scratch (no MODEL.WEIGHTS).

        Raises:
            ValueError: naming the peer's config, when its operating point, data or batch
                differ from the search config's (:attr:`PAIRED_KEYS`).
        """
        from atto_detectron.config import load_config

        config_file = self.peer_config_file(name)
        cfg = self._scheduled(
            load_config(config_file, self.config.opts), "scratch", seed, output_dir
        )
        prototype = self.candidate_cfg("prototype.yaml", "scratch", seed, output_dir)
        differ = []
        for key in self.PAIRED_KEYS:
            mine, theirs = prototype, cfg
            for part in key.split("."):
                mine, theirs = getattr(mine, part), getattr(theirs, part)
            if mine != theirs:
                differ.append(f"{key} {theirs!r} (search: {mine!r})")
        if differ:
            raise ValueError(
                f"peer {name} ({config_file}) is not paired with the search config "
                f"{self.config.config_file}: {'; '.join(differ)}. Give the search a config "
                f"with the peer's settings, or override them (KEY VALUE)."
            )
        return cfg

    def latency_ms(self, cfg, settings: LatencySettings) -> float:
        """
        The latency of the detector of ``cfg`` (see :mod:`~design_exploration.latency`), at
        the settings' operating point where they give one.
        """
        from .latency import detector_latency_ms

        if settings.engine not in self.latency_engines:
            raise ValueError(
                f"latency engine must be one of {self.latency_engines}; got {settings.engine!r}"
            )
        opts = settings.operating_point_opts()
        if opts:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.merge_from_list(opts)
            cfg.freeze()
        return detector_latency_ms(cfg, settings)

    def latencies_ms(self, cfg, settings: LatencySettings) -> Dict[str, float]:
        """Each of the settings' engines -> :meth:`latency_ms` of ``cfg`` in it."""
        return {
            engine: self.latency_ms(cfg, settings.in_engine(engine)) for engine in settings.engines
        }

    def _spec_latencies_ms(
        self, spec: AttoNetSpec, settings: LatencySettings, neck: Optional[NeckGenome] = None
    ) -> Dict[str, float]:
        """
        The latencies of ``spec``'s detector in the settings' engines, measured once per
        process (random weights).
        """
        key = (repr(spec.stages), repr(spec.stem_channels), repr(settings), repr(neck))
        if key not in self._latency:
            with tempfile.TemporaryDirectory() as tmp:
                path = save_attonet_spec(spec, os.path.join(tmp, "spec.yaml"))
                cfg = self.candidate_cfg(path, "scratch", 0, tmp, neck)
                self._latency[key] = self.latencies_ms(cfg, settings)
        return dict(self._latency[key])

    def measure_peer(self, name, seed, accuracy, latency):
        from atto_detectron.analysis.detection import detection_complexity

        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="design_peer_") as tmp:
            cfg = self.peer_cfg(name, seed, os.path.join(tmp, "train"))
            measured = detection_complexity(cfg, self.input_size)
            latencies = {} if latency is None else self.latencies_ms(cfg, latency)
            ap50, metrics = None, {}
            if accuracy:
                ap50, metrics, _ = self._train_and_test(cfg, initialize=None)
        return PeerRecord(
            name=name,
            config_file=self.peer_config_file(name),
            params=int(measured["params"]["total"]),
            mult_adds=int(measured["mult_adds"]["total"]),
            latency_ms=latencies[latency.engine] if latencies else None,
            accuracy=ap50,
            metrics=json.loads(json.dumps(metrics, default=float)),
            seconds=time.perf_counter() - start,
            latencies_ms=latencies,
        )

    def _train_and_test(self, cfg, initialize: Optional[Initializer]):
        """
        Trains the model of ``cfg`` (seeded by ``cfg.SEED``; ``initialize(model)`` first
        when given) and tests it on ``DATASETS.TEST``; deletes ``cfg.OUTPUT_DIR``.

        Returns:
            (box AP50, 0 where it is not finite; the test results; the weights on CPU).
        """
        from detectron2.utils.env import seed_all_rng

        from atto_detectron.engine import AttoTrainer

        # Seeds the initialisation and Detectron2's TrainingSampler (which otherwise draws
        # a random seed).
        seed_all_rng(cfg.SEED)
        try:
            trainer = AttoTrainer(cfg)
            if initialize is not None:
                initialize(trainer.model)
            trainer.train()
            model = trainer.model
            # The trainer's EvalHook evaluates once after the last iteration.
            results = trainer.eval_results
            if results is None:
                results = AttoTrainer.test(cfg, model)
            ap50 = float(results["bbox"]["AP50"])
            state = _cpu_state(model)
        finally:
            trainer = model = None
            gc.collect()
            shutil.rmtree(cfg.OUTPUT_DIR, ignore_errors=True)
        return (ap50 if math.isfinite(ap50) else 0.0), copy.deepcopy(dict(results)), state

    def evaluate(
        self, spec, spec_path, schedule, seed, initialize=None, measure_latency=False, neck=None
    ):
        params, mult_adds = self.complexity(spec, neck)
        output_dir = f"{os.path.splitext(spec_path)[0]}_{schedule}"
        cfg = self.candidate_cfg(spec_path, schedule, seed, output_dir, neck)
        accuracy, results, state = self._train_and_test(cfg, initialize)
        latency_settings = _latency_settings(measure_latency)
        latencies = {}
        if latency_settings is not None:
            latencies = self._spec_latencies_ms(spec, latency_settings, neck)
        return CandidateResult(
            accuracy=accuracy,
            params=params,
            mult_adds=mult_adds,
            latency_ms=latencies[latency_settings.engine] if latencies else None,
            metrics=results,
            state_dict=state,
            latencies_ms=latencies,
        )
