from .results import format_summary, summarize_ap, write_results
from .trainer import AttoTrainer, StopOnNonFiniteGradients

__all__ = [
    "AttoTrainer",
    "StopOnNonFiniteGradients",
    "format_summary",
    "summarize_ap",
    "write_results",
]
