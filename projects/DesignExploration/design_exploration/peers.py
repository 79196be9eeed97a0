"""
Peer models: the Mask R-CNNs with other backbones that requirements can be relative to.

A requirement such as ``max_latency_ms: {of: ShuffleNetV2-FPN}``
(:class:`~design_exploration.requirements.PeerReference`) names a peer; the search
measures it once, at its start, and records it in the search state
(:class:`PeerRecord`). A peer is a Detectron2 config of the plugin with the search
config's FPN, heads, data and schedule and another bottom-up network: the synthetic-data
config when the search's config is one (under ``configs/synth/`` or named ``*synth*``),
else the Pascal VOC one.
"""

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, Mapping, Optional

__all__ = ["PEER_CONFIGS", "PEER_NAMES", "PeerRecord", "mask_ap50", "peer_config_file"]

# Peer name -> its config on the generated data ("synth") and on Pascal VOC ("voc"), in
# the plugin's model zoo (atto_detectron.model_zoo.get_config_file).
PEER_CONFIGS = {
    "ShuffleNetV2-FPN": {
        "synth": "synth/mask_rcnn_shufflenet_v2_FPN_synth.yaml",
        "voc": "mask_rcnn_shufflenet_v2_FPN_voc.yaml",
    },
    "MobileNetV2-FPN": {
        "synth": "synth/mask_rcnn_mobilenet_v2_FPN_synth.yaml",
        "voc": "mask_rcnn_mobilenet_v2_FPN_voc.yaml",
    },
    "R50-FPN": {
        "synth": "synth/mask_rcnn_R_50_FPN_synth.yaml",
        "voc": "mask_rcnn_R_50_FPN_voc.yaml",
    },
}
PEER_NAMES = tuple(PEER_CONFIGS)


def peer_config_file(name: str, search_config_file: str) -> str:
    """
    The config file of peer ``name`` that goes with the search's config (see the module
    docstring), from the plugin's model zoo.

    Raises:
        ValueError: for an unknown peer, naming the known ones.
    """
    from atto_detectron.model_zoo import get_config_file

    if name not in PEER_CONFIGS:
        raise ValueError(f"unknown peer {name!r}; known peers: {', '.join(PEER_NAMES)}")
    path = os.path.abspath(search_config_file)
    synth = "synth" in os.path.basename(os.path.dirname(path)) or "synth" in os.path.basename(path)
    return get_config_file(PEER_CONFIGS[name]["synth" if synth else "voc"])


def mask_ap50(metrics: Mapping) -> Optional[float]:
    """
    Mask AP50 (percent) of an evaluator's results (Detectron2's "segm" dict); None
    without masks (classification, box-only detection); 0 where it is not finite, as the
    box AP50 that ``accuracy`` holds.
    """
    value = (metrics or {}).get("segm", {}).get("AP50")
    if value is None:
        return None
    return float(value) if math.isfinite(float(value)) else 0.0


@dataclass
class PeerRecord:
    """
    A peer as the search measured it.

    Attributes:
        name: the peer's name (a key of :data:`PEER_CONFIGS`).
        config_file: its Detectron2 config.
        params, mult_adds: of the whole detector, at the task's input size.
        latency_ms: as the candidates' latencies are measured (in the settings' engine);
            None when the search measures no latencies.
        accuracy: box AP50 after the prototype's schedule, seed and data order; None when
            no requirement needs it (its mask AP50 is read from ``metrics``).
        metrics: the evaluator's full results of that training (empty without it).
        seconds: the time its measurement took.
        latencies_ms: each engine latency is measured in -> its latency.
    """

    name: str
    config_file: str
    params: int
    mult_adds: int
    latency_ms: Optional[float]
    accuracy: Optional[float]
    metrics: Dict = field(default_factory=dict)
    seconds: float = 0.0
    latencies_ms: Dict[str, float] = field(default_factory=dict)

    def figures(self) -> Dict[str, Optional[float]]:
        """The figures that requirements can be relative to."""
        return {
            "accuracy": self.accuracy,
            "params": self.params,
            "mult_adds": self.mult_adds,
            "latency_ms": self.latency_ms,
            "latencies_ms": dict(self.latencies_ms),
            "mask_accuracy": mask_ap50(self.metrics),
        }

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "PeerRecord":
        # latencies_ms is absent from states of searches measuring one engine before it.
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
