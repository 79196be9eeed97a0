"""Weight inheritance: a candidate starts from its parent's trained weights.

Parent and child are AttoNets of the same prototype whose widths, and numbers of modules
per stage, may differ. Every channel of the child is matched with a channel of the parent,
or marked new, along each *channel axis*:

* ``"stem"``: the stem's output;
* ``"res2"``..``"res5"``: a stage's residual stream (every module of the stage writes it);
* ``"res3.1.compression"``, ``"res3.1.depthwise"``, ``"res3.1.mixing"``: the outputs of a
  module's 1x1 compression (c), 3x3 depthwise (g) and 1x1 mixing (p) convs.

Where the child is narrower, it keeps the parent's most important channels, in their
original order. A channel's importance is the absolute scale of the norm layers that
normalise it (BN's gamma, as in network slimming, Liu et al. 2017): for a residual stream,
the pre-activation norms of all modules that read it (and a classifier's final norm). The
depthwise outputs, which no norm follows, keep their group (the compression channel they
read) and are ranked within it by the L1 norm of their filters. Where the child is wider,
it has all of the parent's channels followed by new ones.

Weights are then copied between matched channels. A new output channel keeps the child's
fresh initialisation, and every weight that *reads* a new channel is set to zero: a child
that only widens its parent therefore computes exactly the parent's function (in eval
mode) and starts training from there. Shrinking drops the least important channels, which
short fine-tuning repairs. A projection shortcut the parent lacks starts fresh.

Modules are matched by stage and position. A module the parent lacks (the child's stage is
deeper) starts fresh, with its last conv (decompression) at zero when its shortcut is the
identity, so that it passes its input through unchanged; a module the child lacks is
dropped, which fine-tuning repairs.

Outside the AttoNet (a detector's FPN, RPN and heads), a tensor whose shape differs from
the parent's (the child's FPN is narrower or wider) gets the parent's values where their
indices overlap, channels in order: along its first axis (outputs) the rest keeps its
fresh initialisation, along the others (inputs, e.g. the box head's first FC over
``C x 7 x 7`` features, flattened channel-major) the rest is zero. Without a norm over
channel groups, a wider FPN therefore starts from its parent's function (the plugin's
configs use GroupNorm in the FPN, whose groups change with the width); a narrower one keeps
its first channels.
"""

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from atto_detectron.modeling.attonet_spec import IDENTITY, STAGE_NAMES, AttoNetSpec

__all__ = [
    "AttoNetLayout",
    "CLASSIFIER_LAYOUT",
    "DETECTOR_FPN_LAYOUT",
    "channel_plans",
    "inherit_state_dict",
    "inherit_weights",
]


@dataclass(frozen=True)
class AttoNetLayout:
    """
    Where an AttoNet sits in a model's state dict.

    Attributes:
        prefix: key prefix of the AttoNet backbone ("backbone." in
            :class:`~atto_detectron.modeling.AttoNetClassifier`).
        norm_readers: (key prefix, stage) of per-channel layers over a stage's output
            (a classifier's final norm): all their tensors follow that stage's channels.
        input_readers: (key prefix, stage) of layers whose weight reads a stage's output
            along dimension 1 (the FC, FPN's lateral convs); their other tensors are copied.
    """

    prefix: str
    norm_readers: Tuple[Tuple[str, str], ...] = ()
    input_readers: Tuple[Tuple[str, str], ...] = ()


CLASSIFIER_LAYOUT = AttoNetLayout(
    prefix="backbone.", norm_readers=(("final_norm.", "res5"),), input_readers=(("fc.", "res5"),)
)
# build_attonet_fpn_backbone: the AttoNet is FPN's bottom_up; "fpn_lateral<k>" reads res<k>.
DETECTOR_FPN_LAYOUT = AttoNetLayout(
    prefix="backbone.bottom_up.",
    input_readers=tuple((f"backbone.fpn_lateral{k}.", f"res{k}") for k in (2, 3, 4, 5)),
)


def _modules(spec: AttoNetSpec):
    """(stage name, index in stage, module spec, name of the channel axis it reads)."""
    previous = "stem"
    for stage_name, stage in zip(STAGE_NAMES, spec.stages):
        for i, module in enumerate(stage):
            yield stage_name, i, module, previous if i == 0 else stage_name
        previous = stage_name


def _check_same_prototype(parent: AttoNetSpec, child: AttoNetSpec) -> None:
    if len(parent.stages) != len(child.stages):
        raise ValueError(
            f"Weight inheritance needs the same prototype: {parent.name} has "
            f"{len(parent.stages)} stages, {child.name} {len(child.stages)}."
        )


def _new_modules(parent: AttoNetSpec, child: AttoNetSpec):
    """(stage name, index, module spec) of the child's modules that the parent lacks."""
    for stage_name, parent_stage, child_stage in zip(STAGE_NAMES, parent.stages, child.stages):
        for i in range(len(parent_stage), len(child_stage)):
            yield stage_name, i, child_stage[i]


def _select(importance: torch.Tensor, width: int) -> np.ndarray:
    """Parent channel of each child channel (-1: new): the ``width`` most important."""
    n = importance.numel()
    if width >= n:
        return np.concatenate([np.arange(n), np.full(width - n, -1)]).astype(np.int64)
    order = np.argsort(-importance.double().cpu().numpy(), kind="stable")
    return np.sort(order[:width]).astype(np.int64)


def _norm_scale(state: Mapping, prefix: str) -> Optional[torch.Tensor]:
    weight = state.get(prefix + "weight")
    return None if weight is None else weight.detach().abs().float()


def _filter_l1(state: Mapping, key: str) -> torch.Tensor:
    return state[key].detach().flatten(1).abs().sum(1).float()


def channel_plans(
    parent_state: Mapping[str, torch.Tensor],
    parent_spec: AttoNetSpec,
    child_spec: AttoNetSpec,
    layout: AttoNetLayout = CLASSIFIER_LAYOUT,
) -> Dict[str, np.ndarray]:
    """
    Returns:
        dict: channel axis (see the module docstring) -> int64 array with, for each
        channel of the child, the index of the parent's channel it inherits, or -1.
    """
    _check_same_prototype(parent_spec, child_spec)
    state, pre = parent_state, layout.prefix
    plans = {}

    stem_importance = _norm_scale(state, pre + "stem.conv1.norm.")
    if stem_importance is None:
        stem_importance = _filter_l1(state, pre + "stem.conv1.weight")
    plans["stem"] = _select(stem_importance, child_spec.stem_channels)

    # A stream's readers: the pre-activation norms of the modules that take it as input.
    readers: Dict[str, List[str]] = {name: [] for name in STAGE_NAMES}
    for stage_name, i, _, input_axis in _modules(parent_spec):
        if input_axis != "stem":
            readers[input_axis].append(f"{pre}stages.{stage_name}.{i}.preact_norm.")
    for key_prefix, stage_name in layout.norm_readers:
        readers[stage_name].append(key_prefix)
    for stage_name, parent_stage, child_stage in zip(
        STAGE_NAMES, parent_spec.stages, child_spec.stages
    ):
        scales = [s for s in (_norm_scale(state, r) for r in readers[stage_name]) if s is not None]
        if scales:
            importance = torch.stack(scales).sum(0)
        else:  # no affine norm reads it: rank by the filters that write it
            importance = sum(
                _filter_l1(state, f"{pre}stages.{stage_name}.{i}.decompression.weight")
                for i in range(len(parent_stage))
            )
        plans[stage_name] = _select(importance, child_stage[0].out_channels)

    parent_modules = {(name, i): module for name, i, module, _ in _modules(parent_spec)}
    for stage_name, i, child_module, _ in _modules(child_spec):
        parent_module = parent_modules.get((stage_name, i))
        if parent_module is None:  # a new module: nothing to inherit
            continue
        base = f"{pre}stages.{stage_name}.{i}."
        for conv, width in (
            ("compression", child_module.compression),
            ("mixing", child_module.mixing),
        ):
            importance = _norm_scale(state, f"{base}{conv}.norm.")
            if importance is None:
                importance = _filter_l1(state, f"{base}{conv}.weight")
            plans[f"{stage_name}.{i}.{conv}"] = _select(importance, width)

        # Depthwise output k*M + j is filter j of group k (the group reads compression
        # channel k). Each child group keeps its parent group's best filters.
        filter_l1 = _filter_l1(state, f"{base}depthwise.weight")
        m_parent, m_child = parent_module.multiplier, child_module.multiplier
        depthwise = np.full(child_module.depthwise, -1, dtype=np.int64)
        for k, parent_group in enumerate(plans[f"{stage_name}.{i}.compression"]):
            if parent_group < 0:
                continue
            start = parent_group * m_parent
            kept = _select(filter_l1[start : start + m_parent], m_child)
            depthwise[k * m_child : (k + 1) * m_child] = np.where(kept >= 0, kept + start, -1)
        plans[f"{stage_name}.{i}.depthwise"] = depthwise
    return plans


def _tensor_axes(spec: AttoNetSpec, layout: AttoNetLayout) -> Dict[str, Tuple]:
    """Key (or key prefix ending in ".") -> (output axis, input axis) of its tensors."""
    pre = layout.prefix
    axes = {pre + "stem.conv1.": ("stem", None), pre + "stem.conv1.norm.": ("stem", None)}
    for stage_name, i, _, input_axis in _modules(spec):
        base, module = f"{pre}stages.{stage_name}.{i}.", f"{stage_name}.{i}."
        axes[base + "preact_norm."] = (input_axis, None)
        axes[base + "shortcut.weight"] = (stage_name, input_axis)
        axes[base + "compression.weight"] = (module + "compression", input_axis)
        axes[base + "compression.norm."] = (module + "compression", None)
        axes[base + "depthwise.weight"] = (module + "depthwise", None)
        axes[base + "mixing.weight"] = (module + "mixing", module + "depthwise")
        axes[base + "mixing.norm."] = (module + "mixing", None)
        axes[base + "decompression.weight"] = (stage_name, module + "mixing")
    return axes


def _axes_of(key: str, tensor: torch.Tensor, axes: Mapping, layout: AttoNetLayout):
    if tensor.dim() == 0:  # num_batches_tracked
        return None, None
    if key in axes:
        return axes[key]
    prefix = key[: key.rfind(".") + 1]
    if prefix in axes:
        return axes[prefix]
    for reader, stage_name in layout.norm_readers:
        if key.startswith(reader):
            return stage_name, None
    for reader, stage_name in layout.input_readers:
        if key.startswith(reader) and key.endswith("weight") and tensor.dim() >= 2:
            return None, stage_name
    return None, None


def _overlap_plan(child_width: int, parent_width: int) -> np.ndarray:
    """Channels in order: the first ``min`` inherited, the rest new (-1)."""
    plan = np.arange(child_width, dtype=np.int64)
    plan[plan >= parent_width] = -1
    return plan


def _overlap_copy(child: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """The parent's values where the indices overlap (see the module docstring)."""
    result = child.detach().clone()
    parent = parent.detach().to(result.device, result.dtype)
    kept = min(child.shape[0], parent.shape[0])
    if result.dim() > 1:
        # Inherited outputs read new input channels (beyond the parent's) with zeros.
        result[:kept] = 0
    overlap = tuple(slice(0, min(a, b)) for a, b in zip(child.shape, parent.shape))
    result[overlap] = parent[overlap]
    return result


def _transfer(
    child: torch.Tensor,
    parent: torch.Tensor,
    out_plan: Optional[np.ndarray],
    in_plan: Optional[np.ndarray],
) -> torch.Tensor:
    result = child.detach().clone()
    if out_plan is None:  # an axis outside the AttoNet (FPN channels): in order
        out_plan = _overlap_plan(child.shape[0], parent.shape[0])
    kept_out = torch.as_tensor(np.nonzero(out_plan >= 0)[0])
    source_out = torch.as_tensor(out_plan[out_plan >= 0])
    parent = parent.detach().to(result.device, result.dtype)
    if in_plan is None:
        result[kept_out] = parent[source_out]
        return result
    kept_in = torch.as_tensor(np.nonzero(in_plan >= 0)[0])
    source_in = torch.as_tensor(in_plan[in_plan >= 0])
    result[kept_out[:, None], kept_in[None, :]] = parent[source_out[:, None], source_in[None, :]]
    # Weights that read a new channel start at zero, so new channels change nothing yet.
    result[:, torch.as_tensor(np.nonzero(in_plan < 0)[0])] = 0
    return result


def inherit_state_dict(
    child_state: Mapping[str, torch.Tensor],
    parent_state: Mapping[str, torch.Tensor],
    parent_spec: AttoNetSpec,
    child_spec: AttoNetSpec,
    layout: AttoNetLayout = CLASSIFIER_LAYOUT,
) -> Tuple[Dict[str, torch.Tensor], Dict[str, List[str]]]:
    """
    Args:
        child_state: the freshly initialised child's state dict.
        parent_state: the trained parent's state dict.
        parent_spec, child_spec: their AttoNets (the same prototype).
        layout: where the AttoNet is in these state dicts.

    Returns:
        (state dict for the child, {"inherited": keys, "fresh": keys}): "fresh" lists the
        tensors with no counterpart in the parent (kept as initialised).
    """
    plans = channel_plans(parent_state, parent_spec, child_spec, layout)
    axes = _tensor_axes(child_spec, layout)
    state, report = {}, {"inherited": [], "fresh": []}
    for key, tensor in child_state.items():
        parent = parent_state.get(key)
        out_axis, in_axis = _axes_of(key, tensor, axes, layout)
        if parent is None or parent.dim() != tensor.dim():
            state[key] = tensor
            report["fresh"].append(key)
            continue
        if out_axis is None and in_axis is None:
            if parent.shape == tensor.shape:
                state[key] = parent.detach().clone().to(tensor.device, tensor.dtype)
            else:
                state[key] = _overlap_copy(tensor, parent)
        else:
            state[key] = _transfer(tensor, parent, plans.get(out_axis), plans.get(in_axis))
        report["inherited"].append(key)
    for stage_name, i, module in _new_modules(parent_spec, child_spec):
        if module.shortcut == IDENTITY:  # the new module starts as the identity
            key = f"{layout.prefix}stages.{stage_name}.{i}.decompression.weight"
            state[key] = torch.zeros_like(state[key])
    return state, report


def inherit_weights(
    model: nn.Module,
    parent_state: Mapping[str, torch.Tensor],
    parent_spec: AttoNetSpec,
    child_spec: AttoNetSpec,
    layout: AttoNetLayout = CLASSIFIER_LAYOUT,
) -> Dict[str, List[str]]:
    """
    Loads into ``model`` (the child, freshly built from ``child_spec``) what it inherits
    from the parent (see :func:`inherit_state_dict`). Returns the inherited/fresh keys.
    """
    state, report = inherit_state_dict(
        model.state_dict(), parent_state, parent_spec, child_spec, layout
    )
    model.load_state_dict(state)
    return report
