"""Parameters and mult-adds, measured with fvcore through Detectron2's analysis tools.

Mult-adds here are those of the multiply-accumulate operators (convolutions, including
transposed ones, and fully connected / matrix products) as fvcore counts them: one fused
multiply-add = 1. Element-wise work (norms, activations, pooling, resizing, NMS) is left
out, as in Detectron2's own FLOP tests and in the papers' "mult-adds".
"""

import math
from typing import Dict

import torch
from torch import nn

from detectron2.utils.analysis import FlopCountAnalysis

__all__ = [
    "MULT_ADD_OPERATORS",
    "count_parameters",
    "mult_adds_by_module",
    "count_mult_adds",
    "netscore",
]

# fvcore operator names (FlopCountAnalysis.by_operator keys) that are multiply-adds.
MULT_ADD_OPERATORS = frozenset({"conv", "linear", "matmul", "bmm", "einsum", "addmm"})


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or frozen (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def mult_adds_by_module(model: nn.Module, inputs) -> Dict[str, int]:
    """
    Runs ``model`` once on ``inputs`` under fvcore's tracer.

    Args:
        model: any module; Detectron2 meta-architectures take their usual inputs
            (a list of dicts), plain modules a tensor or tuple of tensors.
        inputs: as ``model`` takes them.

    Returns:
        dict: module name ("" for the whole model, "backbone.bottom_up", ...) ->
        mult-adds of that module and its children.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, inputs)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            by_module = analysis.by_module_and_operator()
    finally:
        model.train(was_training)
    # Detectron2's FlopCountAnalysis wraps the model in a TracingAdapter named "model".
    result = {}
    for name, operators in by_module.items():
        if name == "":
            continue
        name = "" if name == "model" else name[len("model.") :]
        result[name] = int(sum(n for op, n in operators.items() if op in MULT_ADD_OPERATORS))
    return result


def count_mult_adds(model: nn.Module, inputs) -> int:
    """Mult-adds of one forward pass of ``model`` on ``inputs`` (see module docstring)."""
    return mult_adds_by_module(model, inputs)[""]


def netscore(top1_percent: float, params: float, mult_adds: float) -> float:
    """
    NetScore (Wong, 2018) as used in Table 2: 20 * log10(a^2 / sqrt(p * m)), where
    a = top-1 accuracy in percent, p = parameters in millions and m = mult-adds in
    billions (alpha = 2, beta = gamma = 0.5).

    Args:
        top1_percent: top-1 accuracy, in percent (e.g. 73.0).
        params: number of parameters (absolute, e.g. 2_970_339).
        mult_adds: number of mult-adds (absolute, e.g. 424.8e6).
    """
    if not (top1_percent > 0 and params > 0 and mult_adds > 0):
        raise ValueError(
            f"NetScore needs positive accuracy, parameters and mult-adds; got "
            f"{top1_percent}, {params}, {mult_adds}"
        )
    p_millions, m_billions = params / 1e6, mult_adds / 1e9
    return 20.0 * math.log10(top1_percent**2 / math.sqrt(p_millions * m_billions))
